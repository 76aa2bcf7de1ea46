/**
 * Reconnect pacing with "full jitter" exponential backoff: the n-th retry waits a uniformly random time in
 * [0, min(cap, base * 2^n)) (the reconnect schedule also keeps it within half the outage so far). After a broker
 * outage, thousands of devices then spread their reconnects over the whole window instead of arriving in
 * synchronized waves, as they would with a fixed period.
 */
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

export interface ReconnectPolicy extends BackoffPolicy {
  /** A connection that stays up this long resets the backoff to its base. */
  stableMs: number;
}

/** The largest delay the n-th retry (0-based) may wait. */
export function backoffCeiling(attempt: number, policy: BackoffPolicy): number {
  // 2^52 already exceeds any cap; clamping keeps the arithmetic exact for absurd attempt counts.
  return Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(attempt, 52));
}

/** The n-th retry's delay; `random` returns a number in [0, 1) like Math.random. */
export function fullJitterDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, policy));
}

/**
 * The next retry waits at most this share of how long the trouble has lasted. A pure exponential ceiling overshoots:
 * after a 10 s broker restart it already spans 16-32 s, so a device comes back long after its broker did. Bounded by
 * the outage's own length, a short outage costs a short wait, while a long one still spreads a fleet's reconnects over
 * a window that grows with it (up to capMs): full jitter all the same.
 */
const OUTAGE_SHARE = 0.5;

/** The ceiling of a retry `troubleMs` into an outage: the exponential one, no more than OUTAGE_SHARE of the outage so far. */
export function outageCeiling(attempt: number, troubleMs: number, policy: BackoffPolicy): number {
  return Math.min(backoffCeiling(attempt, policy), Math.max(policy.baseMs, Math.floor(troubleMs * OUTAGE_SHARE)));
}

/**
 * Schedules retries on the backoff and resets it once a connection has proved stable. A connection that drops
 * before stableMs does not reset it, so a broker that accepts and then kicks clients is not hammered: its trouble
 * counts from the first failure after the last stable connection.
 */
export class ReconnectSchedule {
  #attempt = 0;
  #troubleSince: number | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #stableTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly policy: ReconnectPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  /** Retries since the last stable connection. */
  get attempts(): number {
    return this.#attempt;
  }

  /** Calls `retry` after the next delay (replacing any pending retry) and returns that delay. */
  scheduleRetry(retry: () => void): number {
    this.cancelRetry();
    const now = Date.now();
    this.#troubleSince ??= now;
    const delay = Math.floor(this.random() * outageCeiling(this.#attempt, now - this.#troubleSince, this.policy));
    this.#attempt += 1;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      retry();
    }, delay);
    return delay;
  }

  connected(): void {
    clearTimeout(this.#stableTimer);
    this.#stableTimer = setTimeout(() => {
      this.#stableTimer = undefined;
      this.#attempt = 0;
      this.#troubleSince = undefined;
    }, this.policy.stableMs);
  }

  disconnected(): void {
    clearTimeout(this.#stableTimer);
    this.#stableTimer = undefined;
  }

  /** Stops every timer; nothing is called afterwards. */
  cancel(): void {
    this.cancelRetry();
    this.disconnected();
  }

  private cancelRetry(): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }
}
