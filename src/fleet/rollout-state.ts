import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { writeFileAtomic } from '../lib/files.js';
import { RolloutStateError } from './errors.js';
import { errorReason, isErrno } from '../lib/errors.js';

/**
 * The rollout's progress on the operator's disk, rewritten atomically after every change, so that a rollout
 * interrupted by a crash or a reboot of the operator's machine carries on where it stopped.
 */
const AmountSchema = z.union([z.object({ count: z.int().min(0) }), z.object({ percent: z.number().gt(0).max(100) })]);

export const DeviceProgressSchema = z.object({
  status: z.enum(['pending', 'sent', 'succeeded', 'failed']),
  commandId: z.string().optional(),
  detail: z.string().optional(),
});
export type DeviceProgress = z.output<typeof DeviceProgressSchema>;

export const RolloutStateSchema = z.object({
  formatVersion: z.literal(1),
  rolloutId: z.string(),
  createdAt: z.string(),
  plan: z.object({
    kind: z.enum(['k3s.upgrade', 'agent.upgrade']),
    args: z.record(z.string(), z.unknown()),
    filter: z.object({ labels: z.record(z.string(), z.string()).optional(), group: z.string().optional(), onlineOnly: z.boolean().optional() }),
    canaries: z.array(z.string()),
    canaryCount: z.int().min(0),
    batchSize: AmountSchema,
    maxFailures: AmountSchema,
    deviceTimeoutSeconds: z.number().positive(),
    ttlSeconds: z.number().positive(),
  }),
  batches: z.array(z.array(z.string())),
  devices: z.record(z.string(), DeviceProgressSchema),
  outcome: z.enum(['running', 'completed', 'halted', 'aborted']),
  haltReason: z.string().optional(),
  /** Set when an operator resumed a halted rollout with a new threshold: the canaries' zero no longer applies. */
  thresholdRaised: z.boolean().optional(),
});
export type RolloutState = z.output<typeof RolloutStateSchema>;

export function newRolloutId(): string {
  return `r-${randomBytes(6).toString('hex')}`;
}

const MAX_STATE_BYTES = 16 * 1024 * 1024;

export function loadRolloutState(file: string): RolloutState | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw new RolloutStateError(`cannot read rollout state ${file}: ${errorReason(err)}`);
  }
  if (text.length > MAX_STATE_BYTES) throw new RolloutStateError(`${file} is too large to be a rollout state`);
  try {
    return RolloutStateSchema.parse(JSON.parse(text));
  } catch {
    throw new RolloutStateError(`${file} is not a rollout state file; move it away or pick another --state`);
  }
}

/**
 * Saves written atomically (the file is always the old or the new state, never a torn one, also after a power
 * cut) and one after the other: devices of a batch finish at once, and a slower older save must not land last.
 */
export class RolloutStateFile {
  private last: Promise<void> = Promise.resolve();

  constructor(readonly file: string) {}

  save(state: RolloutState): Promise<void> {
    const text = `${JSON.stringify(state, null, 2)}\n`;
    this.last = this.last.then(() => writeFileAtomic(this.file, text, { mode: 0o600 }));
    return this.last;
  }
}
