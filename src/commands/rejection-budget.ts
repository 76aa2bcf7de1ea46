/**
 * Bounds how many `rejected` results a device sends. Anyone who can publish on a command topic can make the device
 * refuse things; without a bound, a flood of garbage would fill the outbox's result budget and push out the results
 * operators are waiting for. A token bucket: `perMinute` refusals a minute, bursts up to the same number.
 */
export class RejectionBudget {
  private tokens: number;
  private last: number;
  /** Refusals not reported since the last one that was. */
  suppressed = 0;

  constructor(
    private readonly perMinute: number,
    now: number,
  ) {
    this.tokens = perMinute;
    this.last = now;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.perMinute, this.tokens + ((now - this.last) * this.perMinute) / 60_000);
    this.last = now;
    if (this.tokens < 1) {
      this.suppressed += 1;
      return false;
    }
    this.tokens -= 1;
    return true;
  }
}
