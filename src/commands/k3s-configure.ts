import { z } from 'zod';
import type { CommandContext, CommandHandler } from './handler.js';
import { SealedSecretError } from '../protocol/sealed-secret.js';
import type { K3sControl, K3sNodeChanges } from '../k3s/ports.js';
import type { SecretOpener } from './secret-args.js';

/**
 * Where a run stands, saved durably before the step it names, so that a crash at any instant resumes safely:
 * `applying` (the default of a first run) repeats the idempotent apply; `applied` restarts and judges the new
 * settings; `reverting` is saved BEFORE the revert, because a run resumed as `applied` after the revert would
 * judge the old settings healthy and report the change as succeeded.
 */
const StepSchema = z.object({ phase: z.enum(['applying', 'applied', 'reverting']), reason: z.string().optional() });

/**
 * `k3s.configure`: labels, taints, server URL, join-token rotation, applied with a restart. When k3s is not healthy
 * with the new settings (a wrong token, an unreachable server), the previous settings are put back and k3s
 * restarted on them, so a bad change cannot strand the node. The token never appears in a result.
 */
export function k3sConfigureHandler(k3s: K3sControl, healthTimeoutMs: number, secrets: SecretOpener): CommandHandler<'k3s.configure'> {
  return {
    type: 'k3s.configure',
    onInterrupted: 'resume',
    run: async (context) => {
      const { id, args } = context.command;
      const saved = StepSchema.safeParse(context.savedStep);
      let phase = saved.success ? saved.data.phase : 'applying';
      let reason = (saved.success && saved.data.reason) || 'unhealthy';
      const changed = Object.keys(args).join(', ');
      if (phase === 'applying') {
        let changes: K3sNodeChanges;
        try {
          changes = unsealed(context.command, secrets);
        } catch (err) {
          if (!(err instanceof SealedSecretError)) throw err;
          return { status: 'failed', reason: 'sealed_secret', detail: `${err.message}; nothing was changed` };
        }
        // Keeps the settings from before this command, tagged with its id, before writing the new ones.
        await k3s.applyNodeSettings(id, changes);
        context.saveStep({ phase: 'applied' }, true);
        context.progress('applied', changed);
        phase = 'applied';
      }
      if (phase === 'applied') {
        await k3s.restart();
        const health = await k3s.waitHealthy(healthTimeoutMs, context.signal);
        if (health.healthy) return { status: 'succeeded', detail: `applied ${changed}; k3s healthy` };
        // Cut short by a stop: not a verdict on the new settings; the resumed run restarts and waits again.
        if (context.signal.aborted) throw new Error('stopping while waiting for k3s');
        reason = health.reason;
        context.saveStep({ phase: 'reverting', reason }, true);
      }
      await k3s.revertNodeSettings(id);
      context.progress('reverted', `k3s was not healthy with the new settings: ${reason}`);
      await k3s.restart();
      const health = await k3s.waitHealthy(healthTimeoutMs, context.signal);
      if (!health.healthy && context.signal.aborted) throw new Error('stopping while waiting for k3s');
      const back = health.healthy ? 'previous settings restored and healthy' : `previous settings restored but not healthy (${health.reason})`;
      return { status: 'failed', reason: 'rolled_back', detail: `k3s was not healthy with the new ${changed} (${reason}); ${back}` };
    },
  };
}

/** The token is opened only here, just before it is written to k3s's token file; the journal keeps it sealed. */
function unsealed(command: CommandContext<'k3s.configure'>['command'], secrets: SecretOpener): K3sNodeChanges {
  const { joinToken, ...rest } = command.args;
  if (!joinToken) return rest;
  return { ...rest, joinToken: secrets.open(joinToken, { commandId: command.id, type: command.type, arg: 'joinToken', deviceId: deviceOf(command) }) };
}

/** Secret arguments only ever reach a device-targeted command (parseCommandArgs refuses a group target). */
function deviceOf(command: { target: { device: string } | { group: string } }): string {
  if (!('device' in command.target)) throw new SealedSecretError('a sealed secret addressed to a group cannot be opened');
  return command.target.device;
}
