import type { Logger } from '../lib/logger.js';
import type { Command, CommandType } from '../protocol/command.js';
import { boundedDetail, type CommandResult, type RejectReason } from '../protocol/result.js';
import { SCHEMA_VERSION, type Topics } from '../protocol/topics.js';
import type { Outbox } from '../store/outbox.js';
import type { AnyCommandHandler, CommandContext, HandlerOutcome } from './handler.js';
import type { CommandJournal } from './journal.js';
import { RejectionBudget } from './rejection-budget.js';
import { verifyCommand, type TrustedKey } from './verify.js';

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
}

/**
 * verify -> journal -> dispatch, one command at a time (two upgrades must never interleave). It ALWAYS replies:
 * a refusal gets `rejected` with its reason and runs nothing; an accepted command gets `accepted`, progress and
 * one final result, also when a restart interrupted it (see resumeInterrupted).
 */
export class CommandRouter {
  private readonly handlers = new Map<CommandType, AnyCommandHandler>();
  private readonly abort = new AbortController();
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  private readonly now: () => number;
  private readonly rejections: RejectionBudget;

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
    const verdict = verifyCommand(payload, { ...settings, nowMs, seenBefore: (id) => journal.seenBefore(id) });
    if (!verdict.ok) {
      logger.warn({ commandId: verdict.commandId, reason: verdict.reason, detail: verdict.detail }, 'command refused');
      this.reject(verdict.commandId, verdict.type, verdict.reason, verdict.detail);
      return;
    }
    const { command } = verdict;
    if (!settings.enabled) return this.reject(command.id, command.type, 'disabled', 'commands are disabled on this device');
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
   * Verifies a journaled command again, with this build's verification and the device's trust, as of its issue
   * time (its age is not the question): a self-updated binary proves its command path works with it.
   */
  verifiesAgain(commandId: string): boolean {
    const entry = this.deps.journal.get(commandId);
    if (!entry || !this.deps.settings.enabled || !this.handlers.has(entry.command.type)) return false;
    const payload = Buffer.from(JSON.stringify(entry.command), 'utf8');
    return verifyCommand(payload, { ...this.deps.settings, nowMs: entry.command.issuedAt, seenBefore: () => false }).ok;
  }

  /** Resolves when every queued command has finished (or is pending a restart). */
  idle(): Promise<void> {
    return this.queue;
  }

  /** Asks the running handler to stop and waits for it; an aborted run stays in the journal and resumes later. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.queue;
  }

  private schedule(handler: AnyCommandHandler, command: Command, savedStep: unknown, resumed: boolean): void {
    this.queued += 1;
    this.queue = this.queue.then(async () => {
      this.queued -= 1;
      if (this.abort.signal.aborted) return;
      const outcome = await this.runHandler(handler, command, savedStep, resumed);
      // A run that failed while the agent was stopping most likely failed because of the stop: leave it running in
      // the journal, so that the next start resumes it (or reports it interrupted) instead of a misleading failure.
      if (this.abort.signal.aborted && outcome.status === 'failed') return;
      this.finish(command, outcome);
    });
  }

  private async runHandler(handler: AnyCommandHandler, command: Command, savedStep: unknown, resumed: boolean): Promise<HandlerOutcome> {
    const context: CommandContext = {
      command,
      savedStep,
      resumed,
      saveStep: (step, durable) => this.deps.journal.saveStep(command.id, step, durable, this.now()),
      progress: (step, detail, data) =>
        this.publish(command, { status: 'progress', step, ...(detail ? { detail: boundedDetail(detail) } : {}), ...(data ? { data } : {}) }),
      signal: this.abort.signal,
      logger: this.deps.logger.child({ commandId: command.id, type: command.type }),
    };
    try {
      // The map is keyed by type, so the handler always matches the command it is given.
      return await handler.run(context as never);
    } catch (err) {
      if (this.abort.signal.aborted) return { status: 'failed', reason: 'aborted', detail: 'the agent is stopping' };
      this.deps.logger.error({ err, commandId: command.id }, 'command handler failed');
      return { status: 'failed', reason: 'error', detail: err instanceof Error ? err.message : String(err) };
    }
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
