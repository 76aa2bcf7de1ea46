import { rm } from 'node:fs/promises';
import type { CommandHandler } from './handler.js';
import type { K3sControl } from '../k3s/ports.js';
import { runState, UpgradeStateSchema, type UpgradeState, type UpgradeStateName } from './k3s-upgrade-states.js';
import { errorMessage } from '../lib/errors.js';

export interface K3sUpgradeOptions {
  k3s: K3sControl;
  healthTimeoutMs: number;
  minFreeBytes: number;
  /** Largest binary downloaded; the agent passes commands.k3sUpgrade.maxArtifactBytes. */
  maxArtifactBytes?: number;
  /** A download silent this long fails; the agent passes commands.downloadIdleTimeoutSeconds. */
  downloadIdleTimeoutMs?: number;
  /** Called as each state begins, after it was persisted. Fault-injection tests stop the process here. */
  onState?: (state: UpgradeStateName) => void;
}

/** The config defaults, for a handler built outside the agent (fixtures, benchmarks). */
const DEFAULT_MAX_ARTIFACT_BYTES = 512 * 1024 * 1024;
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;

/** More transitions than any legal path has: a state machine that loops is a bug, stopped rather than spun. */
const MAX_TRANSITIONS = 32;

/**
 * `k3s.upgrade`: runs the upgrade state machine, persisting every state durably before running it, so that a
 * restart resumes where it stopped (onInterrupted 'resume') and always ends in committed or rolled back.
 */
export function k3sUpgradeHandler(options: K3sUpgradeOptions): CommandHandler<'k3s.upgrade'> {
  return {
    type: 'k3s.upgrade',
    onInterrupted: 'resume',
    // Every state can be cancelled: before the swap it ends there, after it the previous k3s is restored first.
    cancellable: () => true,
    run: async (context) => {
      const saved = UpgradeStateSchema.safeParse(context.savedStep);
      let state: UpgradeState = saved.success ? saved.data : { state: 'check' };
      if (context.resumed) context.progress('resumed', `after a restart, at ${state.state}`);
      const env = {
        k3s: options.k3s,
        args: context.command.args,
        commandId: context.command.id,
        healthTimeoutMs: options.healthTimeoutMs,
        minFreeBytes: options.minFreeBytes,
        maxArtifactBytes: options.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES,
        downloadIdleTimeoutMs: options.downloadIdleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        expiresAt: context.command.expiresAt,
        signal: context.signal,
        progress: context.progress,
      };
      for (let transitions = 0; state.state !== 'done'; transitions++) {
        if (transitions >= MAX_TRANSITIONS) throw new Error(`upgrade state machine did not finish after ${MAX_TRANSITIONS} steps`);
        context.saveStep(state, true);
        options.onState?.(state.state);
        context.progress(state.state);
        try {
          const next = await runState(state, env);
          // A health wait cut short by a stop says nothing about k3s: keep the current state, to run again on resume.
          if (context.shutdownSignal.aborted) throw new Error(`stopping during ${state.state}`);
          if (context.cancelled() && env.signal !== context.shutdownSignal) {
            // From here on only a stop may cut a step short: the undo of a cancelled upgrade must run to its end.
            env.signal = context.shutdownSignal;
            state = await afterCancel(state, next);
          } else {
            state = next;
          }
        } catch (err) {
          if (context.shutdownSignal.aborted) throw err;
          state = afterError(state, errorMessage(err));
        }
      }
      context.saveStep(state, true);
      options.onState?.('done');
      return state.outcome === 'succeeded'
        ? { status: 'succeeded', detail: state.detail, data: { reason: state.reason } }
        : { status: 'failed', reason: state.reason, detail: state.detail };
    },
  };
}

/**
 * Where a cancel leads, given the state that was running and the one it returned: an upgrade that already ended
 * stays ended; before the swap it ends with nothing changed; after it the previous binary is restored; a rollback
 * health wait that the cancel cut short runs again.
 */
async function afterCancel(current: UpgradeState, next: UpgradeState): Promise<UpgradeState> {
  if (current.state === 'rollback_wait_health') return current;
  if (next.state === 'done') return next;
  switch (current.state) {
    case 'check':
    case 'download':
      if ('newPath' in next) await rm(next.newPath, { force: true });
      return { state: 'done', outcome: 'failed', reason: 'cancelled', detail: `cancelled during ${current.state}; nothing was changed` };
    case 'swap':
    case 'restart':
    case 'wait_health':
    case 'commit':
      return { state: 'rollback', fromVersion: current.fromVersion, fromSha: current.fromSha, reason: `cancelled during ${current.state}` };
    default:
      return next;
  }
}

/** Where a step that threw leads: before the swap nothing changed; after it, roll back; a failed rollback ends it. */
function afterError(state: UpgradeState, message: string): UpgradeState {
  switch (state.state) {
    case 'swap':
    case 'restart':
    case 'wait_health':
    case 'commit':
      return { state: 'rollback', fromVersion: state.fromVersion, fromSha: state.fromSha, reason: `${state.state} failed: ${message}` };
    case 'rollback':
    case 'rollback_restart':
    case 'rollback_wait_health':
      return { state: 'done', outcome: 'failed', reason: 'rollback_failed', detail: `${state.reason}; rolling back failed too: ${message}` };
    default:
      return { state: 'done', outcome: 'failed', reason: 'error', detail: `${state.state} failed: ${message}; nothing was changed` };
  }
}
