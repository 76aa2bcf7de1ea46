import type { Heartbeat } from '../lib/heartbeat.js';
import type { Logger } from '../lib/logger.js';
import type { Command, CommandType } from '../protocol/command.js';
import { boundedDetail, type CommandResult, type RejectReason } from '../protocol/result.js';
import { SCHEMA_VERSION, type Topics } from '../protocol/topics.js';
import type { Outbox } from '../store/outbox.js';
import type { AnyCommandHandler, CommandContext, HandlerOutcome } from './handler.js';
import type { CommandJournal } from './journal.js';
import { RejectionBudget } from './rejection-budget.js';
import { keyStanding, verifyCommand, type TrustedKey } from './verify.js';
import { errorMessage } from '../lib/errors.js';

export interface RouterSettings {
  enabled: boolean;
  deviceId: string;
  groups: readonly string[];
  trustedKeys: ReadonlyMap<string, TrustedKey>;
  clockSkewMs: number;
  maxLifetimeMs: number;
  maxBytes: number;
  /** Commands waiting behind the running one; more are refused as `busy` (not journaled: they may be resent). */
  maxQueued: number;
  /** `rejected` results sent per minute at most; further refusals are only logged and counted. */
  maxRejectionsPerMinute?: number;
}

export interface RouterDeps {
  settings: RouterSettings;
  journal: CommandJournal;
  outbox: Outbox;
  topics: Topics;
  handlers: readonly AnyCommandHandler[];
  logger: Logger;
  now?: () => number;
  /** The keys in force now (the trust document's, which trust.update replaces); absent: settings.trustedKeys. */
  trust?: { keys(): ReadonlyMap<string, TrustedKey> };
}

/** The command that runs now: what a `command.cancel` needs to stop it. */
interface Run {
  command: Command;
  handler: AnyCommandHandler;
  /** The step it saved last (undefined before its first save). */
  step: unknown;
  cancel: AbortController;
  /** The id of the `command.cancel` that stopped it. */
  cancelledBy?: string;
  /** Resolves with how it ended: its final status, 'pending' (awaits a restart), or undefined when a stop cut it. */
  ended: Promise<'succeeded' | 'failed' | 'pending' | undefined>;
}

/**
 * verify -> journal -> dispatch, one command at a time (two upgrades must never interleave). It ALWAYS replies:
 * a refusal gets `rejected` with its reason and runs nothing; an accepted command gets `accepted`, progress and
 * one final result, also when a restart interrupted it (see resumeInterrupted). `command.cancel` is the exception
 * to the queue: it is handled at once, so that it can stop the command the queue is waiting on.
 */
export class CommandRouter {
  private readonly handlers = new Map<CommandType, AnyCommandHandler>();
  private readonly abort = new AbortController();
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  /** Accepted commands not started yet, by id; a cancel marks them so that they never start. */
  private readonly waiting = new Map<string, { cancelledBy?: string }>();
  private running: Run | undefined;
  private readonly cancels = new Set<Promise<void>>();
  private readonly now: () => number;
  private readonly rejections: RejectionBudget;
  private progress: Heartbeat | undefined;

  constructor(private readonly deps: RouterDeps) {
    for (const handler of deps.handlers) this.handlers.set(handler.type, handler);
    this.now = deps.now ?? Date.now;
    this.rejections = new RejectionBudget(deps.settings.maxRejectionsPerMinute ?? DEFAULT_REJECTIONS_PER_MINUTE, this.now());
  }

  /** Entry point for a raw payload from a command topic. Never throws. */
  receive(payload: Uint8Array): void {
    try {
      this.receiveOrThrow(payload);
    } catch (err) {
      this.deps.logger.error({ err }, 'command handling failed');
    }
  }

  private receiveOrThrow(payload: Uint8Array): void {
    const { settings, journal, logger } = this.deps;
    const nowMs = this.now();
    const replayHorizonMs = journal.replayHorizon();
    const verdict = verifyCommand(payload, {
      ...settings,
      trustedKeys: this.trustedKeys(),
      nowMs,
      seenBefore: (id) => journal.seenBefore(id),
      ...(replayHorizonMs !== undefined ? { replayHorizonMs } : {}),
    });
    if (!verdict.ok) {
      logger.warn({ commandId: verdict.commandId, reason: verdict.reason, detail: verdict.detail }, 'command refused');
      this.reject(verdict.commandId, verdict.type, verdict.reason, verdict.detail);
      return;
    }
    const { command } = verdict;
    if (!settings.enabled) return this.reject(command.id, command.type, 'disabled', 'commands are disabled on this device');
    if (command.type === 'command.cancel') return this.acceptCancel(command);
    const handler = this.handlers.get(command.type);
    if (!handler) return this.reject(command.id, command.type, 'disabled', `${command.type} is not available on this device`);
    if (this.queued >= settings.maxQueued) return this.reject(command.id, command.type, 'busy', 'too many commands waiting');
    if (!journal.begin(command, nowMs)) return this.reject(command.id, command.type, 'replayed', 'this command id was seen before');
    logger.info({ commandId: command.id, type: command.type, keyId: command.keyId }, 'command accepted');
    this.publish(command, { status: 'accepted' });
    this.schedule(handler, command, undefined, false);
  }

  /**
   * At start: every command the journal still holds as running was interrupted by a crash or power cut. Each is
   * resumed from its saved step or reported failed, so none is silently dropped.
   */
  resumeInterrupted(): number {
    const entries = this.deps.journal.running();
    for (const entry of entries) {
      const handler = this.handlers.get(entry.command.type);
      if (handler?.onInterrupted === 'resume') {
        this.deps.logger.warn({ commandId: entry.commandId, type: entry.type }, 'resuming a command a restart interrupted');
        this.schedule(handler, entry.command, entry.step, true);
      } else {
        this.finish(entry.command, { status: 'failed', reason: 'interrupted', detail: 'the agent restarted while it ran' });
      }
    }
    this.deps.journal.prune(this.now(), this.deps.settings.clockSkewMs);
    return entries.length;
  }

  /**
   * Reports the queue's liveness to the watchdog: idle while nothing runs, and a running command may take until
   * it expires (plus the clock-skew allowance); one still running after that is wedged.
   */
  reportProgress(heartbeat: Heartbeat): void {
    this.progress = heartbeat;
    if (this.queued === 0) heartbeat.idle();
  }

  /**
   * Verifies a journaled command again, with this build's verification and the device's trust, as of its issue
   * time (its age is not the question): a self-updated binary proves its command path works with it.
   */
  verifiesAgain(commandId: string): boolean {
    const entry = this.deps.journal.get(commandId);
    if (!entry || !this.deps.settings.enabled || !this.handlers.has(entry.command.type)) return false;
    const payload = Buffer.from(JSON.stringify(entry.command), 'utf8');
    return verifyCommand(payload, { ...this.deps.settings, trustedKeys: this.trustedKeys(), nowMs: entry.command.issuedAt, seenBefore: () => false }).ok;
  }

  private trustedKeys(): ReadonlyMap<string, TrustedKey> {
    return this.deps.trust?.keys() ?? this.deps.settings.trustedKeys;
  }

  /** Resolves when every queued command has finished (or is pending a restart). */
  idle(): Promise<void> {
    return this.queue;
  }

  /** Asks the running handler to stop and waits for it; an aborted run stays in the journal and resumes later. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.queue;
    await Promise.all(this.cancels);
  }

  private schedule(handler: AnyCommandHandler, command: Command, savedStep: unknown, resumed: boolean): void {
    this.queued += 1;
    const slot: { cancelledBy?: string } = {};
    this.waiting.set(command.id, slot);
    this.queue = this.queue.then(async () => {
      this.queued -= 1;
      this.waiting.delete(command.id);
      if (this.abort.signal.aborted) return;
      if (slot.cancelledBy) {
        this.finish(command, { status: 'failed', reason: 'cancelled', detail: `cancelled by ${slot.cancelledBy} before it started; nothing ran` });
        return;
      }
      // The key was checked when the command came; a trust.update ahead of it in the queue, or while the agent was
      // down (a resumed command), may have taken the key's authority back since. It is stopped as a cancel would stop
      // it: one past the step where that is safe (a swapped binary on trial) finishes, and its own checks decide.
      const standing = keyStanding(command, this.trustedKeys(), this.now(), this.deps.settings.clockSkewMs);
      if (standing && (savedStep === undefined || handler.cancellable?.(savedStep) === true)) {
        this.deps.logger.warn({ commandId: command.id, keyId: command.keyId, reason: standing.reason }, 'command stopped: its key lost its authority');
        this.finish(command, { status: 'failed', reason: standing.reason, detail: `${standing.detail}; ${resumed ? 'it was not resumed' : 'nothing ran'}` });
        return;
      }
      if (standing) this.deps.logger.warn({ commandId: command.id, keyId: command.keyId, reason: standing.reason }, 'its key lost its authority, but it is past the step where it can be stopped');
      let settle: (status: 'succeeded' | 'failed' | 'pending' | undefined) => void = () => {};
      const run: Run = { command, handler, step: savedStep, cancel: new AbortController(), ended: new Promise((resolve) => (settle = resolve)) };
      let ended: 'succeeded' | 'failed' | 'pending' | undefined;
      try {
        this.running = run;
        this.progress?.busyFor(command.expiresAt - this.now() + this.deps.settings.clockSkewMs);
        let outcome = await this.runHandler(run, savedStep, resumed);
        this.running = undefined;
        // A run that failed while the agent was stopping most likely failed because of the stop: leave it running in
        // the journal, so that the next start resumes it (or reports it interrupted) instead of a misleading failure.
        if (this.abort.signal.aborted && outcome.status === 'failed') return;
        if (run.cancelledBy && outcome.status === 'failed') {
          outcome = { status: 'failed', reason: 'cancelled', detail: `cancelled by ${run.cancelledBy}: ${outcome.detail}` };
        }
        this.finish(command, outcome);
        ended = outcome.status;
      } finally {
        this.running = undefined;
        if (this.queued === 0) this.progress?.idle();
        // Also when finishing threw: a cancel waiting on this run (and stop() waiting on the cancel) must not hang.
        settle(ended);
      }
    });
  }

  private async runHandler(run: Run, savedStep: unknown, resumed: boolean): Promise<HandlerOutcome> {
    const { command, handler } = run;
    const context: CommandContext = {
      command,
      savedStep,
      resumed,
      saveStep: (step, durable) => {
        run.step = step;
        this.deps.journal.saveStep(command.id, step, durable, this.now());
      },
      progress: (step, detail, data) =>
        this.publish(command, { status: 'progress', step, ...(detail ? { detail: boundedDetail(detail) } : {}), ...(data ? { data } : {}) }),
      signal: AbortSignal.any([this.abort.signal, run.cancel.signal]),
      shutdownSignal: this.abort.signal,
      cancelled: () => run.cancelledBy !== undefined,
      logger: this.deps.logger.child({ commandId: command.id, type: command.type }),
    };
    try {
      // The map is keyed by type, so the handler always matches the command it is given.
      return await handler.run(context as never);
    } catch (err) {
      if (this.abort.signal.aborted) return { status: 'failed', reason: 'aborted', detail: 'the agent is stopping' };
      if (run.cancelledBy) return { status: 'failed', reason: 'cancelled', detail: errorMessage(err) };
      this.deps.logger.error({ err, commandId: command.id }, 'command handler failed');
      return { status: 'failed', reason: 'error', detail: errorMessage(err) };
    }
  }

  private acceptCancel(command: Extract<Command, { type: 'command.cancel' }>): void {
    if (!this.deps.journal.begin(command, this.now())) return this.reject(command.id, command.type, 'replayed', 'this command id was seen before');
    this.deps.logger.info({ commandId: command.id, target: command.args.commandId }, 'cancel accepted');
    this.publish(command, { status: 'accepted' });
    const target = command.args.commandId;
    const slot = this.waiting.get(target);
    if (slot) {
      slot.cancelledBy = command.id;
      return this.finish(command, { status: 'succeeded', detail: `${target} was waiting; it will not run` });
    }
    const run = this.running;
    if (run?.command.id !== target) {
      return this.finish(command, { status: 'failed', reason: 'not_running', detail: `no command ${target} is running or waiting here` });
    }
    if (!run.handler.cancellable?.(run.step)) {
      return this.finish(command, { status: 'failed', reason: 'not_cancellable', detail: `${run.command.type} ${target} cannot be stopped at this step` });
    }
    run.cancelledBy ??= command.id;
    run.cancel.abort();
    const reported = run.ended.then((status) => {
      if (status === 'failed') this.finish(command, { status: 'succeeded', detail: `${target} stopped and reported failed (cancelled)` });
      else if (status === undefined) this.finish(command, { status: 'failed', reason: 'interrupted', detail: `the agent stopped before ${target} ended` });
      else this.finish(command, { status: 'failed', reason: 'not_cancelled', detail: `${target} went on to ${status} before it could be stopped` });
    });
    this.cancels.add(reported);
    void reported.finally(() => this.cancels.delete(reported));
  }

  private finish(command: Command, outcome: HandlerOutcome): void {
    if (outcome.status === 'pending') return;
    // The final result is queued before the journal closes the entry: a crash in between repeats it, never loses it.
    if (outcome.status === 'succeeded') {
      this.publish(command, {
        status: 'succeeded',
        ...(outcome.detail ? { detail: boundedDetail(outcome.detail) } : {}),
        ...(outcome.data ? { data: outcome.data } : {}),
      });
    } else {
      this.publish(command, { status: 'failed', reason: outcome.reason.slice(0, 64), detail: boundedDetail(outcome.detail) });
    }
    this.deps.journal.finish(command.id, outcome.status, outcome.status === 'succeeded' ? (outcome.detail ?? 'ok') : outcome.detail, this.now());
    this.deps.logger.info({ commandId: command.id, outcome: outcome.status }, 'command finished');
    // Keeps the journal bounded by the commands still valid, whatever the agent's uptime.
    this.deps.journal.prune(this.now(), this.deps.settings.clockSkewMs);
  }

  private reject(commandId: string | null, type: CommandType | null, reason: RejectReason, detail: string): void {
    const suppressedBefore = this.rejections.suppressed;
    if (!this.rejections.take(this.now())) {
      if (this.rejections.suppressed % 100 === 1) this.deps.logger.warn({ suppressed: this.rejections.suppressed }, 'too many refusals; not reporting them all');
      return;
    }
    if (suppressedBefore > 0) {
      detail = `${detail} (and ${suppressedBefore} refusal(s) before this one not reported: too many)`;
      this.rejections.suppressed = 0;
    }
    this.enqueue({ schemaVersion: SCHEMA_VERSION, commandId, deviceId: this.deps.settings.deviceId, type, at: this.now(), status: 'rejected', reason, detail: boundedDetail(detail) });
  }

  private publish(command: Command, body: DistributiveOmit<CommandResult, 'schemaVersion' | 'commandId' | 'deviceId' | 'type' | 'at'>): void {
    this.enqueue({ schemaVersion: SCHEMA_VERSION, commandId: command.id, deviceId: this.deps.settings.deviceId, type: command.type, at: this.now(), ...body } as CommandResult);
  }

  private enqueue(result: CommandResult): void {
    const topic = this.deps.topics.device(this.deps.settings.deviceId, 'results');
    this.deps.outbox.enqueue({ class: 'result', topic, payload: result as unknown as Record<string, unknown>, qos: 1 });
  }
}

const DEFAULT_REJECTIONS_PER_MINUTE = 60;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
