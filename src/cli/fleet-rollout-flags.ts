import { UsageError } from '../lib/errors.js';
import { COMMAND_ARGS } from '../protocol/command.js';
import { parseAmount, type RolloutPlan } from '../fleet/rollout-plan.js';

/** The flags of `fleet rollout`, and the plan a new rollout is made from. */
export interface RolloutFlags {
  key?: string;
  keyId?: string;
  state?: string;
  abort?: boolean;
  to?: string;
  sha256?: string;
  artifactUrl?: string;
  allowDowngrade?: boolean;
  releaseSignature?: string;
  label: string[];
  group?: string;
  includeOffline?: boolean;
  canary?: string;
  canaryCount: string;
  batchSize: string;
  maxFailures: string;
  deviceTimeout: string;
  ttl: string;
  dryRun?: boolean;
}

export function rolloutPlan(what: 'k3s' | 'agent', o: RolloutFlags): RolloutPlan {
  const args: Record<string, unknown> = { version: o.to };
  if (o.sha256) args.sha256 = o.sha256;
  if (o.artifactUrl) args.artifactUrl = o.artifactUrl;
  if (o.allowDowngrade) args.allowDowngrade = true;
  if (o.releaseSignature) {
    try {
      args.releaseSignature = JSON.parse(o.releaseSignature) as unknown;
    } catch {
      throw new UsageError('--release-signature expects the JSON that `fleet release sign` printed');
    }
  }
  const kind = what === 'k3s' ? 'k3s.upgrade' : 'agent.upgrade';
  const checked = COMMAND_ARGS[kind].safeParse(args);
  if (!checked.success) throw new UsageError(`invalid ${kind} args: ${checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { kind, args, ...stagesOf(o) };
}

/** Which devices, in which stages, halting when: what every kind of rollout takes from the flags besides its command. */
export function stagesOf(o: RolloutFlags): Omit<RolloutPlan, 'kind' | 'args'> {
  const canaryCount = Number(o.canaryCount);
  if (!Number.isInteger(canaryCount) || canaryCount < 0) throw new UsageError('--canary-count expects a whole number');
  return {
    filter: { labels: labelsOf(o.label), ...(o.group ? { group: o.group } : {}), onlineOnly: o.includeOffline !== true },
    canaries: o.canary ? o.canary.split(',').map((id) => id.trim()).filter(Boolean) : [],
    canaryCount,
    batchSize: parseAmount(o.batchSize, '--batch-size'),
    maxFailures: parseAmount(o.maxFailures, '--max-failures'),
    deviceTimeoutSeconds: positive(o.deviceTimeout, '--device-timeout'),
    ttlSeconds: positive(o.ttl, '--ttl'),
  };
}

export function labelsOf(pairs: string[]): Record<string, string> {
  return Object.fromEntries(
    pairs.map((pair) => {
      const at = pair.indexOf('=');
      if (at <= 0) throw new UsageError(`--label expects key=value, got "${pair}"`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
}

export function positive(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`${flag} expects a positive number, got "${text}"`);
  return value;
}

