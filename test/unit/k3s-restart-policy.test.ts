import { describe, expect, it } from 'vitest';
import { RestartPolicy } from '../../src/k3s/restart-policy.js';

const options = { backoffBaseMs: 1_000, backoffCapMs: 8_000, crashLoopExits: 5, crashLoopWindowMs: 60_000, crashLoopRetryMs: 300_000 };

describe('restart policy', () => {
  it('doubles the delay up to the cap, jittered within the upper half', () => {
    const low = new RestartPolicy({ ...options, crashLoopExits: 100 }, () => 0);
    const high = new RestartPolicy({ ...options, crashLoopExits: 100 }, () => 0.999999);
    const lows = Array.from({ length: 6 }, (_, i) => low.afterExit(i * 60_001).delayMs);
    const highs = Array.from({ length: 6 }, (_, i) => high.afterExit(i * 60_001).delayMs);
    expect(lows).toEqual([500, 1_000, 2_000, 4_000, 4_000, 4_000]);
    expect(highs).toEqual([1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
  });

  it('calls a crash loop after N exits inside the window, not when they are spread out', () => {
    const policy = new RestartPolicy(options, () => 0.5);
    const verdicts = [0, 1_000, 2_000, 3_000, 4_000].map((at) => policy.afterExit(at).verdict);
    expect(verdicts).toEqual(['backoff', 'backoff', 'backoff', 'backoff', 'crash-loop']);
    expect(policy.afterExit(5_000)).toMatchObject({ verdict: 'crash-loop', delayMs: 300_000, exits: 6 });

    const spread = new RestartPolicy(options, () => 0.5);
    const spreadVerdicts = [0, 20_000, 40_000, 61_000, 81_000, 101_000].map((at) => spread.afterExit(at).verdict);
    expect(spreadVerdicts).not.toContain('crash-loop');
  });

  it('starts over after a reset', () => {
    const policy = new RestartPolicy(options, () => 0);
    for (let i = 0; i < 4; i++) policy.afterExit(i);
    policy.reset();
    expect(policy.afterExit(10)).toEqual({ verdict: 'backoff', delayMs: 500 });
  });
});
