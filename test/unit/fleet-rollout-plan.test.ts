import { describe, expect, it } from 'vitest';
import { parseAmount, planBatches, resolveAmount, type RolloutPlan } from '../../src/fleet/rollout-plan.js';
import { UsageError } from '../../src/lib/errors.js';

const plan = (overrides: Partial<RolloutPlan> = {}): RolloutPlan => ({
  kind: 'k3s.upgrade',
  args: { version: 'v1.36.3+k3s1' },
  filter: {},
  canaries: [],
  canaryCount: 1,
  batchSize: { count: 3 },
  maxFailures: { count: 0 },
  deviceTimeoutSeconds: 60,
  ttlSeconds: 3600,
  ...overrides,
});
const ids = (n: number) => Array.from({ length: n }, (_, i) => `d${String(i).padStart(2, '0')}`);

describe('rollout plan', () => {
  it('parses counts and shares, refusing anything else', () => {
    expect(parseAmount('5', '--x')).toEqual({ count: 5 });
    expect(parseAmount('12.5%', '--x')).toEqual({ percent: 12.5 });
    for (const bad of ['-1', '0%', '101%', 'ten', '5 %', '']) expect(() => parseAmount(bad, '--x'), bad).toThrow(UsageError);
  });

  it('resolves a share of the fleet upwards, never below the minimum', () => {
    expect(resolveAmount({ percent: 10 }, 25, 1)).toBe(3);
    expect(resolveAmount({ percent: 1 }, 20, 1)).toBe(1);
    expect(resolveAmount({ count: 0 }, 20, 0)).toBe(0);
  });

  it('puts canaries first, then batches of the rest in a stable order', () => {
    const batches = planBatches(plan({ canaryCount: 2 }), ids(10).reverse());
    expect(batches).toEqual([['d00', 'd01'], ['d02', 'd03', 'd04'], ['d05', 'd06', 'd07'], ['d08', 'd09']]);
  });

  it('uses named canaries that are in the selection, and a percentage batch size', () => {
    const batches = planBatches(plan({ canaries: ['d07', 'ghost'], batchSize: { percent: 50 } }), ids(9));
    expect(batches[0]).toEqual(['d07']);
    expect(batches.slice(1)).toEqual([['d00', 'd01', 'd02', 'd03', 'd04'], ['d05', 'd06', 'd08']]);
    expect(batches.flat().sort()).toEqual(ids(9));
  });

  it('has no canary batch when none is asked for', () => {
    expect(planBatches(plan({ canaryCount: 0, batchSize: { count: 10 } }), ids(4))).toEqual([ids(4)]);
  });
});
