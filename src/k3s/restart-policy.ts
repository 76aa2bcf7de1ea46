import { backoffCeiling } from '../lib/backoff.js';

export interface RestartPolicyOptions {
  backoffBaseMs: number;
  backoffCapMs: number;
  crashLoopExits: number;
  crashLoopWindowMs: number;
  crashLoopRetryMs: number;
}

export type RestartDecision = { verdict: 'backoff'; delayMs: number } | { verdict: 'crash-loop'; delayMs: number; exits: number };

/**
 * When to start k3s again after it exited: exponential backoff with jitter, and a crash-loop verdict (slower
 * retries) after too many exits in a window. A run that stayed healthy long enough clears both.
 */
export class RestartPolicy {
  #exits: number[] = [];
  #attempt = 0;

  constructor(
    private readonly options: RestartPolicyOptions,
    private readonly random: () => number,
  ) {}

  afterExit(now: number): RestartDecision {
    this.#exits = [...this.#exits.filter((at) => now - at < this.options.crashLoopWindowMs), now];
    if (this.#exits.length >= this.options.crashLoopExits) {
      return { verdict: 'crash-loop', delayMs: this.options.crashLoopRetryMs, exits: this.#exits.length };
    }
    // Never below half the ceiling: a k3s that dies at once must not be restarted in a tight loop.
    const ceiling = backoffCeiling(this.#attempt++, { baseMs: this.options.backoffBaseMs, capMs: this.options.backoffCapMs });
    return { verdict: 'backoff', delayMs: Math.round(ceiling / 2 + (this.random() * ceiling) / 2) };
  }

  /** k3s proved stable: start over from the base delay and an empty crash-loop window. */
  reset(): void {
    this.#exits = [];
    this.#attempt = 0;
  }
}
