import { SCHEMA_VERSION } from '../protocol/topics.js';
import { EventSchema, type EventInput, type EventSink, type FleetEvent } from '../protocol/event.js';
import type { NewOutboxRecord, OutboxRecord } from '../store/outbox.js';
import type { Logger } from '../lib/logger.js';
import { TokenBucket, type BucketPolicy } from './token-bucket.js';

export type EmitOutcome = 'sent' | 'duplicate' | 'rate-limited' | 'invalid' | 'failed';

export interface EventGateStats {
  sent: number;
  duplicates: number;
  rateLimited: number;
  invalid: number;
  failed: number;
}

export interface EventGateOptions {
  outbox: { enqueue(record: NewOutboxRecord): OutboxRecord };
  topic: string;
  logger: Logger;
  now?: () => Date;
  monotonicMs?: () => number;
  /** Per kind and key. Default: 4 at once, then one per 10 minutes. */
  perKey?: BucketPolicy;
  /** All events together. Default: 30 at once, then one per 20 seconds. */
  overall?: BucketPolicy;
  /** The same one-off event (kind, key and message) again within this time is a duplicate. Default 60 s. */
  occurredWindowMs?: number;
}

interface KeyState {
  bucket: TokenBucket;
  lastSent?: { state: FleetEvent['state']; message: string; atMs: number };
  /** The newest event held back by the rate limit; sent by flush() once tokens are back. */
  pending?: EventInput;
  suppressed: number;
}

const MAX_KEYS = 256;

/**
 * The one event sink of the agent: deduplicates, rate-limits, validates and enqueues events (class `event`).
 * A condition that is raised while already raised is a duplicate; a flapping one runs out of tokens, and what
 * it held back is counted in `suppressed` of the next event sent for the same key. The latest held-back
 * transition is not lost: flush() sends it once the bucket refills, so the fleet ends up with the final state.
 * Producers never see an exception from here: a broken event or a full disk is logged and counted.
 */
export class EventGate implements EventSink {
  private readonly keys = new Map<string, KeyState>();
  private readonly overall: TokenBucket;
  private readonly now: () => Date;
  private readonly monotonicMs: () => number;
  readonly stats: EventGateStats = { sent: 0, duplicates: 0, rateLimited: 0, invalid: 0, failed: 0 };

  constructor(private readonly options: EventGateOptions) {
    this.now = options.now ?? (() => new Date());
    this.monotonicMs = options.monotonicMs ?? (() => performance.now());
    this.overall = new TokenBucket(options.overall ?? { burst: 30, refillMs: 20_000 }, this.monotonicMs());
  }

  emit(event: EventInput): EmitOutcome {
    // Stamped now, so that an event held back and sent later still says when it happened.
    const input = { ...event, occurredAt: event.occurredAt ?? this.now() };
    const nowMs = this.monotonicMs();
    const id = `${input.kind}/${input.key ?? ''}`;
    const state = this.stateFor(id, nowMs);
    if (this.isDuplicate(state, input, nowMs)) {
      this.stats.duplicates += 1;
      // The fleet already knows this state; a held-back transition away from it is moot.
      state.pending = undefined;
      return 'duplicate';
    }
    if (!this.takeTokens(state, nowMs)) {
      this.stats.rateLimited += 1;
      state.pending = input;
      state.suppressed += 1;
      return 'rate-limited';
    }
    return this.send(state, input, nowMs);
  }

  /** Sends held-back transitions whose key has a token again. Call it now and then (every sample). */
  flush(): void {
    const nowMs = this.monotonicMs();
    for (const state of this.keys.values()) {
      if (!state.pending || !this.takeTokens(state, nowMs)) continue;
      const pending = state.pending;
      state.pending = undefined;
      // It was counted as suppressed when held back; now it is sent after all.
      state.suppressed = Math.max(0, state.suppressed - 1);
      this.send(state, pending, nowMs);
    }
  }

  private takeTokens(state: KeyState, nowMs: number): boolean {
    // Both must allow it; checking first keeps a refused event from spending a token of the other bucket.
    if (!state.bucket.available(nowMs) || !this.overall.available(nowMs)) return false;
    return state.bucket.take(nowMs) && this.overall.take(nowMs);
  }

  private isDuplicate(state: KeyState, input: EventInput, nowMs: number): boolean {
    const last = state.lastSent;
    if (!last || last.state !== input.state) return false;
    if (input.state !== 'occurred') return true;
    return last.message === input.message && nowMs - last.atMs < (this.options.occurredWindowMs ?? 60_000);
  }

  private send(state: KeyState, input: EventInput, nowMs: number): EmitOutcome {
    const { occurredAt, ...rest } = input;
    const parsed = EventSchema.safeParse({
      ...rest,
      schemaVersion: SCHEMA_VERSION,
      occurredAt: (occurredAt ?? this.now()).toISOString(),
      ...(state.suppressed > 0 ? { suppressed: state.suppressed } : {}),
    });
    if (!parsed.success) {
      this.stats.invalid += 1;
      this.options.logger.error({ kind: input.kind, issues: parsed.error.issues.slice(0, 5) }, 'invalid event dropped');
      return 'invalid';
    }
    try {
      this.options.outbox.enqueue({ class: 'event', topic: this.options.topic, payload: parsed.data, qos: 1 });
    } catch (err) {
      this.stats.failed += 1;
      this.options.logger.warn({ err, kind: input.kind }, 'could not queue event');
      return 'failed';
    }
    this.stats.sent += 1;
    state.suppressed = 0;
    state.lastSent = { state: input.state, message: input.message, atMs: nowMs };
    return 'sent';
  }

  private stateFor(id: string, nowMs: number): KeyState {
    let state = this.keys.get(id);
    if (!state) {
      if (this.keys.size >= MAX_KEYS) this.evictOne();
      state = { bucket: new TokenBucket(this.options.perKey ?? { burst: 4, refillMs: 600_000 }, nowMs), suppressed: 0 };
      this.keys.set(id, state);
    }
    return state;
  }

  /** Keys are bounded, so a producer inventing keys cannot grow memory; the oldest idle key goes first. */
  private evictOne(): void {
    for (const [id, state] of this.keys) {
      if (!state.pending) {
        this.keys.delete(id);
        return;
      }
    }
    const oldest = this.keys.keys().next().value;
    if (oldest !== undefined) this.keys.delete(oldest);
  }
}
