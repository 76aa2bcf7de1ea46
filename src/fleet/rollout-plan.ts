import { UsageError } from '../lib/errors.js';
import type { DeviceFilter } from './fleet-view.js';
import { resolveRolloutAmount } from '../protocol/hub-rollouts-api.js';

/** A count or a share of the devices in the rollout: "5" or "10%". */
export type Amount = { count: number } | { percent: number };

export function parseAmount(text: string, flag: string): Amount {
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (percent) {
    const value = Number(percent[1]);
    if (value <= 0 || value > 100) throw new UsageError(`${flag}: a percentage must be in (0, 100], got "${text}"`);
    return { percent: value };
  }
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} expects a count like 5 or a share like 10%, got "${text}"`);
  return { count: Number(text) };
}

/** The one rule for amounts, shared with the hub's rollouts. */
export const resolveAmount = resolveRolloutAmount;

export interface RolloutPlan {
  kind: 'k3s.upgrade' | 'agent.upgrade';
  args: Record<string, unknown>;
  filter: DeviceFilter;
  /** Devices upgraded first, by id; or the first `canaryCount` of the selection. */
  canaries: string[];
  canaryCount: number;
  batchSize: Amount;
  /** More failures than this (over all devices attempted so far) halts the rollout. */
  maxFailures: Amount;
  deviceTimeoutSeconds: number;
  ttlSeconds: number;
}

/** Canaries first (any failure among them halts), then the rest in batches, in a stable order. */
export function planBatches(plan: Pick<RolloutPlan, 'canaries' | 'canaryCount' | 'batchSize'>, selected: string[]): string[][] {
  const sorted = [...selected].sort();
  const named = plan.canaries.filter((id) => sorted.includes(id));
  const canaries = named.length > 0 ? named : sorted.slice(0, plan.canaryCount);
  const rest = sorted.filter((id) => !canaries.includes(id));
  const size = resolveAmount(plan.batchSize, sorted.length, 1);
  const batches: string[][] = canaries.length > 0 ? [canaries] : [];
  for (let i = 0; i < rest.length; i += size) batches.push(rest.slice(i, i + size));
  return batches;
}
