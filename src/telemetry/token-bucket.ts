/** A token bucket on a monotonic clock: `burst` events at once, then one per `refillMs`. */
export interface BucketPolicy {
  burst: number;
  refillMs: number;
}

export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly policy: BucketPolicy,
    nowMs: number,
  ) {
    this.tokens = policy.burst;
    this.updatedAt = nowMs;
  }

  /** Takes a token if one is there. A clock that went backwards refills nothing. */
  take(nowMs: number): boolean {
    this.refill(nowMs);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whether take() would succeed now, without taking. */
  available(nowMs: number): boolean {
    this.refill(nowMs);
    return this.tokens >= 1;
  }

  private refill(nowMs: number): void {
    const elapsed = Math.max(0, nowMs - this.updatedAt);
    this.tokens = Math.min(this.policy.burst, this.tokens + elapsed / this.policy.refillMs);
    this.updatedAt = Math.max(this.updatedAt, nowMs);
  }
}
