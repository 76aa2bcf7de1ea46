import { EVENT_KINDS, type EventInput, type EventKind, type EventSink } from '../protocol/event.js';
import type { MachineIdentity } from './device-id.js';
import { adoptMachine, type DeviceRecordFile, type FingerprintChange } from './device-record.js';
import type { IdentityStore } from './identity-store.js';
import type { NodeFiles } from './node-files.js';
import { renewNodeIdentity } from './node-identity.js';

/** The kind identity raises and clears (protocol/event.ts holds its severity, sentence and remedy). */
export const IDENTITY_EVENT_KINDS = ['identity.fingerprint-changed'] as const satisfies readonly EventKind[];
const FINGERPRINT_CHANGED = EVENT_KINDS['identity.fingerprint-changed'];

export function fingerprintChangedEvent(deviceId: string, change: FingerprintChange): EventInput {
  return {
    kind: 'identity.fingerprint-changed',
    state: 'raised',
    severity: FINGERPRINT_CHANGED.severity,
    message: `${deviceId} now runs on another machine (${change.changed.join(', ')} changed); its id and node password were kept`,
    remedy: FINGERPRINT_CHANGED.remedy,
    detail: {
      deviceId,
      changed: change.changed.join(','),
      recordedFingerprint: change.recordedFingerprint,
      currentFingerprint: change.currentFingerprint,
    },
  };
}

function fingerprintAdoptedEvent(deviceId: string, fingerprint: string, newNodeIdentity: boolean, previousPasswordFingerprint: string | undefined): EventInput {
  return {
    kind: 'identity.fingerprint-changed',
    state: 'cleared',
    severity: 'info',
    message: `an operator confirmed this machine as ${deviceId}${newNodeIdentity ? ' with a new node identity' : ''}`,
    detail: {
      deviceId,
      currentFingerprint: fingerprint,
      newNodeIdentity,
      ...(previousPasswordFingerprint ? { previousPasswordFingerprint } : {}),
    },
  };
}

export interface IdentityControlDeps {
  deviceId: string;
  /** device.id from the config: it wins over any recorded id, so a new one must be set there. */
  configuredDeviceId: string | undefined;
  record: DeviceRecordFile;
  machine: MachineIdentity | undefined;
  /** The common name of the configured client certificate (undefined: unreadable); absent without one. */
  clientCertificateName?: () => string | undefined;
  /** The k3s node identity, when k3s is supervised here. */
  node?: { store: IdentityStore; files: NodeFiles };
  events: EventSink;
}

/** Carries out identity.reidentify on the identity module's files; it satisfies the commands' IdentityControl. */
export function createIdentityControl(deps: IdentityControlDeps) {
  return {
    deviceId: deps.deviceId,
    currentFingerprint: () => deps.machine?.fingerprint,
    refuseDeviceId: (deviceId: string): string | undefined => {
      if (deps.configuredDeviceId) return `device.id is set to ${deps.configuredDeviceId} in the config, which wins: change it there`;
      if (!deps.clientCertificateName) return undefined;
      const name = deps.clientCertificateName();
      // The broker knows the device by its certificate: an id it does not name would cut the device off.
      return name === deviceId ? undefined : `the client certificate is issued to "${name ?? 'unreadable'}": install one issued to ${deviceId} first`;
    },
    refuseNodeIdentity: (): string | undefined => (deps.node ? undefined : 'k3s is not supervised on this device'),
    adopt: async ({ deviceId, newNodeIdentity }: { deviceId: string; newNodeIdentity: boolean }): Promise<void> => {
      let previousPasswordFingerprint: string | undefined;
      if (newNodeIdentity && deps.node) {
        ({ previousPasswordFingerprint } = renewNodeIdentity({ ...deps.node, machineFingerprint: deps.machine?.fingerprint }));
      }
      await adoptMachine(deps.record, deps.machine, deviceId);
      deps.events.emit(fingerprintAdoptedEvent(deviceId, deps.machine?.fingerprint ?? 'unknown', newNodeIdentity, previousPasswordFingerprint));
    },
  };
}
