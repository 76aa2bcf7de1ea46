import { z } from 'zod';
import type { CommandHandler } from './handler.js';
import type { K3sControl } from '../k3s/ports.js';

/** What identity.reidentify needs of the device's identity; the composition root builds it from the identity module. */
export interface IdentityControl {
  /** The id this agent runs under. */
  readonly deviceId: string;
  /** The fingerprint of the machine the agent runs on now, as identity.fingerprint-changed reports it. */
  currentFingerprint(): string | undefined;
  /** Why this device cannot take `deviceId` (device.id is set in the config, the client certificate names another), else undefined. */
  refuseDeviceId(deviceId: string): string | undefined;
  /** Why no new node identity can be made here (k3s is not supervised), else undefined. */
  refuseNodeIdentity(): string | undefined;
  /** Records this machine as the device's own under `deviceId`, renewing the node identity when asked; durable on return. */
  adopt(request: { deviceId: string; newNodeIdentity: boolean }): Promise<void>;
}

export interface ReidentifyDeps {
  identity: IdentityControl;
  k3s?: Pick<K3sControl, 'restart'>;
  /** A clean stop after which the service manager starts the agent again, under the new id. */
  requestRestart: () => void;
}

const StepSchema = z.discriminatedUnion('state', [
  z.strictObject({ state: z.literal('adopted') }),
  z.strictObject({ state: z.literal('restarting'), deviceId: z.string() }),
]);

/**
 * `identity.reidentify`: an operator's answer to identity.fingerprint-changed. Only the device whose machine has the
 * quoted fingerprint acts, so one command cannot re-identify every clone that shares an id. A new device id takes
 * effect through a restart (the link's client id and topics are fixed for a run); the result then comes from the
 * device under its new id.
 */
export function identityReidentifyHandler(deps: ReidentifyDeps): CommandHandler<'identity.reidentify'> {
  return {
    type: 'identity.reidentify',
    onInterrupted: 'resume',
    run: async (context) => {
      const { args } = context.command;
      const saved = StepSchema.safeParse(context.savedStep);
      if (saved.success && saved.data.state === 'restarting') {
        return { status: 'succeeded', detail: `this device is now ${deps.identity.deviceId}` };
      }
      const deviceId = args.deviceId ?? deps.identity.deviceId;
      const newNodeIdentity = args.newNodeIdentity === true;
      if (!saved.success) {
        const current = deps.identity.currentFingerprint();
        if (current !== args.fingerprint) {
          return { status: 'failed', reason: 'fingerprint_mismatch', detail: `this device's machine is ${current ?? 'unknown'}, not ${args.fingerprint}` };
        }
        const refusedId = deviceId === deps.identity.deviceId ? undefined : deps.identity.refuseDeviceId(deviceId);
        if (refusedId) return { status: 'failed', reason: 'device_id_refused', detail: refusedId };
        const refusedNode = newNodeIdentity ? deps.identity.refuseNodeIdentity() : undefined;
        if (refusedNode) return { status: 'failed', reason: 'unavailable', detail: refusedNode };
        context.progress('adopt', `machine ${args.fingerprint} as ${deviceId}${newNodeIdentity ? ' with a new node identity' : ''}`);
        await deps.identity.adopt({ deviceId, newNodeIdentity });
        context.saveStep({ state: 'adopted' }, true);
      }
      if (newNodeIdentity && deps.k3s) {
        context.progress('restart_k3s', 'to join with the new node password');
        await deps.k3s.restart();
      }
      if (deviceId !== deps.identity.deviceId) {
        context.saveStep({ state: 'restarting', deviceId }, true);
        context.progress('restarting', `as ${deviceId}`);
        deps.requestRestart();
        return { status: 'pending' };
      }
      return { status: 'succeeded', detail: `this machine is ${deviceId}${newNodeIdentity ? ', with a new node identity' : ''}` };
    },
  };
}
