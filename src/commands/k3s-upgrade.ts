import type { CommandHandler } from './handler.js';
import type { K3sControl } from './k3s-control.js';
import { runState, UpgradeStateSchema, type UpgradeState, type UpgradeStateName } from './k3s-upgrade-states.js';

export interface K3sUpgradeOptions {
  k3s: K3sControl;
  healthTimeoutMs: number;
  minFreeBytes: number;
  /** Called as each state begins, after it was persisted. Fault-injection tests stop the process here. */
  onState?: (state: UpgradeStateName) => void;
}

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
    run: async (context) => {
      const saved = UpgradeStateSchema.safeParse(context.savedStep);
      let state: UpgradeState = saved.success ? saved.data : { state: 'check' };
      if (context.resumed) context.progress('resumed', `after a restart, at ${state.state}`);
      for (let transitions = 0; state.state !== 'done'; transitions++) {
        if (transitions >= MAX_TRANSITIONS) throw new Error(`upgrade state machine did not finish after ${MAX_TRANSITIONS} steps`);
        context.saveStep(state, true);
        options.onState?.(state.state);
        context.progress(state.state);
        try {
          const next = await runState(state, {
            k3s: options.k3s,
            args: context.command.args,
            commandId: context.command.id,
            healthTimeoutMs: options.healthTimeoutMs,
            minFreeBytes: options.minFreeBytes,
            signal: context.signal,
            progress: context.progress,
          });
          // A health wait cut short by a stop says nothing about k3s: keep the current state, to run again on resume.
          if (context.signal.aborted) throw new Error(`stopping during ${state.state}`);
          state = next;
        } catch (err) {
          if (context.signal.aborted) throw err;
          state = afterError(state, err instanceof Error ? err.message : String(err));
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
