import type { Logger } from '../lib/logger.js';
import type { Command, CommandType } from '../protocol/command.js';

/** What a handler sees of the command it runs, and how it reports and persists its progress. */
export interface CommandContext<T extends CommandType = CommandType> {
  command: Extract<Command, { type: T }>;
  /** The step the handler saved before a restart interrupted it; undefined on a first run. */
  savedStep: unknown;
  resumed: boolean;
  /** Persists progress in the journal; `durable` forces it to disk before a risky step. */
  saveStep(step: unknown, durable?: boolean): void;
  /** Publishes a `progress` result (through the outbox, so it survives an outage). */
  progress(step: string, detail?: string, data?: Record<string, unknown>): void;
  /** Aborted when the agent stops or an operator cancels the command: stop what you are doing. */
  signal: AbortSignal;
  /** Aborted only when the agent stops: what an undo after a cancel (a rollback) waits on. */
  shutdownSignal: AbortSignal;
  /** True once a `command.cancel` for this command arrived; the run should end as failed, leaving things consistent. */
  cancelled(): boolean;
  logger: Logger;
}

export type HandlerOutcome =
  | { status: 'succeeded'; detail?: string; data?: Record<string, unknown> }
  | { status: 'failed'; reason: string; detail: string }
  /** The outcome is decided after a restart (self-update): the command stays running in the journal. */
  | { status: 'pending' };

/** One handler per command type, each in its own file. */
export interface CommandHandler<T extends CommandType = CommandType> {
  readonly type: T;
  /**
   * What a restart does to a run it interrupted: 'resume' runs the handler again with its saved step (it must
   * be written to pick up from there); 'fail' reports it failed, for commands that are not safe to repeat.
   */
  readonly onInterrupted: 'resume' | 'fail';
  /**
   * Whether a `command.cancel` may stop a run that last saved `step` (undefined before its first save). Absent: it
   * cannot be cancelled once it started (it is not written to undo a cut-short run); a queued one always can.
   */
  readonly cancellable?: (step: unknown) => boolean;
  run(context: CommandContext<T>): Promise<HandlerOutcome>;
}

/** A handler of any one type; the router keeps them in one list. */
export type AnyCommandHandler = { [T in CommandType]: CommandHandler<T> }[CommandType];

/** The outcome for a command whose validity ended before a step that changes anything; undefined while valid. */
export function expiredOutcome(command: Command, nowMs = Date.now()): HandlerOutcome | undefined {
  if (nowMs <= command.expiresAt) return undefined;
  return { status: 'failed', reason: 'expired', detail: `the command expired at ${new Date(command.expiresAt).toISOString()} before this step; nothing was changed` };
}
