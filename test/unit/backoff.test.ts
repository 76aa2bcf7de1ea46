import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffCeiling, fullJitterDelay, ReconnectSchedule } from '../../src/lib/backoff.js';

const policy = { baseMs: 1000, capMs: 300_000, stableMs: 60_000 };

/** A small seeded generator, so the distribution checks are deterministic. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('backoff ceiling', () => {
  it('doubles from the base and stops at the cap', () => {
    expect([0, 1, 2, 3, 8].map((n) => backoffCeiling(n, policy))).toEqual([1000, 2000, 4000, 8000, 256_000]);
    expect(backoffCeiling(9, policy)).toBe(300_000);
    expect(backoffCeiling(10_000, policy)).toBe(300_000);
  });
});

describe('full jitter delay', () => {
  it('spans [0, ceiling) and never reaches the ceiling', () => {
    expect(fullJitterDelay(4, policy, () => 0)).toBe(0);
    expect(fullJitterDelay(4, policy, () => 0.999_999_9)).toBe(15_999);
    expect(fullJitterDelay(50, policy, () => 0.999_999_9)).toBe(299_999);
  });

  it('is uniform over the window, so reconnects after an outage spread out', () => {
    const random = seededRandom(42);
    const samples = Array.from({ length: 20_000 }, () => fullJitterDelay(5, policy, random));
    const ceiling = backoffCeiling(5, policy);
    expect(Math.max(...samples)).toBeLessThan(ceiling);
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    expect(Math.abs(mean - ceiling / 2) / (ceiling / 2)).toBeLessThan(0.03);
    const deciles = new Array<number>(10).fill(0);
    for (const sample of samples) deciles[Math.floor((sample / ceiling) * 10)]! += 1;
    for (const count of deciles) expect(count / samples.length).toBeGreaterThan(0.085);
    for (const count of deciles) expect(count / samples.length).toBeLessThan(0.115);
  });

  it('keeps the cap with many devices deep in an outage', () => {
    const random = seededRandom(7);
    const samples = Array.from({ length: 10_000 }, (_, i) => fullJitterDelay(20 + (i % 30), policy, random));
    expect(samples.every((s) => s < policy.capMs)).toBe(true);
    // Still spread: a quarter of them land in each quarter of the capped window.
    const lowQuarter = samples.filter((s) => s < policy.capMs / 4).length / samples.length;
    expect(lowQuarter).toBeGreaterThan(0.22);
    expect(lowQuarter).toBeLessThan(0.28);
  });
});

describe('reconnect schedule (fake timers)', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('retries after the jittered delay, growing to the cap', () => {
    const schedule = new ReconnectSchedule(policy, () => 0.5);
    const retry = vi.fn();
    const delays: number[] = [];
    for (let i = 0; i < 40; i++) {
      const delay = schedule.scheduleRetry(retry);
      delays.push(delay);
      vi.advanceTimersByTime(delay - 1);
      expect(retry).toHaveBeenCalledTimes(i);
      vi.advanceTimersByTime(1);
      expect(retry).toHaveBeenCalledTimes(i + 1);
    }
    expect(delays.slice(0, 3)).toEqual([500, 500, 500]);
    expect(delays.every((delay, i) => i === 0 || delay >= delays[i - 1]!)).toBe(true);
    expect(delays.at(-1)).toBe(150_000);
    expect(schedule.attempts).toBe(40);
  });

  it('waits at most half as long as the broker has been away, so a short outage costs a short wait', () => {
    // The longest waits full jitter can draw: exponential alone would already wait 2 s at the second retry, 8 s by the fourth.
    const schedule = new ReconnectSchedule(policy, () => 0.999_999);
    let awayMs = 0;
    for (let i = 0; i < 30; i++) {
      const delay = schedule.scheduleRetry(() => {});
      expect(delay).toBeLessThanOrEqual(Math.max(policy.baseMs, awayMs / 2));
      expect(delay).toBeLessThan(backoffCeiling(i, policy));
      vi.advanceTimersByTime(delay);
      awayMs += delay;
    }
    expect(awayMs).toBeGreaterThan(policy.capMs);
  });

  it('resets only after a connection stayed up for stableMs', () => {
    const schedule = new ReconnectSchedule(policy, () => 0.999);
    for (let i = 0; i < 5; i++) schedule.scheduleRetry(() => {});
    vi.runAllTimers();
    expect(schedule.attempts).toBe(5);

    schedule.connected();
    vi.advanceTimersByTime(policy.stableMs - 1);
    schedule.disconnected();
    vi.advanceTimersByTime(policy.stableMs * 2);
    expect(schedule.attempts).toBe(5);
    expect(schedule.scheduleRetry(() => {})).toBe(Math.floor(0.999 * 32_000));

    schedule.connected();
    vi.advanceTimersByTime(policy.stableMs);
    expect(schedule.attempts).toBe(0);
    expect(schedule.scheduleRetry(() => {})).toBe(Math.floor(0.999 * 1000));
  });

  it('calls nothing after cancel, and a new retry replaces a pending one', () => {
    const schedule = new ReconnectSchedule(policy, () => 0.5);
    const first = vi.fn();
    const second = vi.fn();
    schedule.scheduleRetry(first);
    schedule.scheduleRetry(second);
    vi.advanceTimersByTime(policy.capMs);
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledTimes(1);

    const third = vi.fn();
    schedule.scheduleRetry(third);
    schedule.connected();
    schedule.cancel();
    vi.advanceTimersByTime(policy.capMs * 2);
    expect(third).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });
});
