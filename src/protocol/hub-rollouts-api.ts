import { z } from 'zod';
import { CommandEnvelopeSchema } from './command.js';

/**
 * Rollouts that run in the hub, one zod schema each: the contract between the hub's rollout engine
 * (src/hub/rollouts), `fleet rollout --hub` and the dashboard. The operator signs every command up front (one per
 * device) and hands the signed envelopes to the hub; the hub holds no signing key and only releases them batch
 * by batch, so it can do nothing the operator did not sign.
 */
const MAX_DEVICES = 20_000;
const isoTime = z.iso.datetime();
const deviceId = z.string().min(1).max(63);
const rolloutId = z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, { error: 'expected 8-64 of A-Z a-z 0-9 _ -' });

export const HUB_ROLLOUT_KINDS = ['k3s.upgrade', 'agent.upgrade', 'k3s.configure'] as const;
export const HUB_ROLLOUT_STATES = ['running', 'paused', 'halted', 'aborted', 'completed', 'expired'] as const;
export const HUB_ROLLOUT_DEVICE_OUTCOMES = [
  'pending',
  /** Its batch came while it was offline: sent when it is back, until the rollout's deadline. */
  'waiting-offline',
  'sent',
  /** Succeeded; now watched for a health regression until the watch window ends. */
  'watching',
  'succeeded',
  'failed',
  /** Succeeded, then went offline, crash-looped or reported k3s unhealthy within the watch window: counted as failed. */
  'regressed',
  /** Never sent: the rollout halted, was aborted or expired first. */
  'skipped',
] as const;

/** A count ("5") or a share ("10%") of the rollout's devices. */
export const RolloutAmount = z.union([
  z.strictObject({ count: z.int().min(0).max(MAX_DEVICES) }),
  // min, not gt: OpenAPI 3.0 and JSON Schema draft 7 spell an exclusive minimum differently, an inclusive one alike.
  z.strictObject({ percent: z.number().min(0.01).max(100) }),
]);

export type RolloutAmount = z.infer<typeof RolloutAmount>;

/** The number an amount stands for among `total` devices (a share rounds up), at least `minimum`. */
export function resolveRolloutAmount(amount: RolloutAmount, total: number, minimum: number): number {
  const value = 'count' in amount ? amount.count : Math.ceil((amount.percent / 100) * total);
  return Math.max(minimum, value);
}

export const HubRolloutCreate = z
  .strictObject({
    rolloutId,
    kind: z.enum(HUB_ROLLOUT_KINDS),
    /** What the operator asked for, shown in the dashboard (the signed envelopes are what runs). */
    description: z.string().max(500),
    /** Batches of device ids in order; the first is the canary batch when `canaries` is true (any failure halts). */
    batches: z.array(z.array(deviceId).min(1).max(MAX_DEVICES)).min(1).max(1000),
    canaries: z.boolean(),
    /** One signed command per device, keyed by device id; each targets exactly that device. */
    commands: z.record(deviceId, CommandEnvelopeSchema),
    maxFailures: RolloutAmount,
    /** A device that sent no final result this long after its command was released counts as failed. */
    deviceTimeoutSeconds: z.int().min(10).max(86_400),
    /** After success, a device that goes offline, crash-loops or reports k3s unhealthy within this window counts as failed. */
    watchSeconds: z.int().min(0).max(86_400),
    /** Offline devices are retried until then; after it, what is not done is skipped and the rollout ends `expired`. */
    deadline: isoTime,
  })
  .refine((r) => new Set(r.batches.flat()).size === r.batches.flat().length, { error: 'a device appears in two batches', path: ['batches'] })
  .refine((r) => r.batches.flat().every((id) => r.commands[id] !== undefined), { error: 'every device in batches needs its signed command', path: ['commands'] })
  .refine((r) => Object.keys(r.commands).length === r.batches.flat().length, { error: 'a command for a device that is in no batch', path: ['commands'] });
export type HubRolloutCreate = z.infer<typeof HubRolloutCreate>;

export const HubRolloutSummary = z.object({
  rolloutId: z.string(),
  kind: z.enum(HUB_ROLLOUT_KINDS),
  description: z.string(),
  state: z.enum(HUB_ROLLOUT_STATES),
  /** Why it halted (or was aborted, and by whom), in words. */
  stateReason: z.string().nullable(),
  createdBy: z.string(),
  createdAt: isoTime,
  updatedAt: isoTime,
  deadline: isoTime,
  /** Index of the batch in progress (0-based), or of the last one when the rollout ended. */
  currentBatch: z.int(),
  batchCount: z.int(),
  devices: z.int(),
  counts: z.record(z.enum(HUB_ROLLOUT_DEVICE_OUTCOMES), z.int()),
  maxFailures: RolloutAmount,
});
export type HubRolloutSummary = z.infer<typeof HubRolloutSummary>;

export const HubRolloutList = z.object({ rollouts: z.array(HubRolloutSummary) });
export type HubRolloutList = z.infer<typeof HubRolloutList>;

export const HubRolloutDetail = HubRolloutSummary.extend({
  canaries: z.boolean(),
  deviceTimeoutSeconds: z.int(),
  watchSeconds: z.int(),
  batches: z.array(
    z.object({
      index: z.int(),
      state: z.enum(['waiting', 'running', 'done', 'skipped']),
      startedAt: isoTime.nullable(),
      finishedAt: isoTime.nullable(),
      devices: z.array(
        z.object({
          deviceId: z.string(),
          commandId: z.string(),
          outcome: z.enum(HUB_ROLLOUT_DEVICE_OUTCOMES),
          /** The device's reason for a failure, or what the watch saw for a regression. */
          detail: z.string().nullable(),
          sentAt: isoTime.nullable(),
          finishedAt: isoTime.nullable(),
        }),
      ),
    }),
  ),
});
export type HubRolloutDetail = z.infer<typeof HubRolloutDetail>;

/** Pause stops releasing commands (those sent still finish); resume goes on; abort ends it for good. */
export const HUB_ROLLOUT_ACTIONS = ['pause', 'resume', 'abort'] as const;
export const HubRolloutAction = z.strictObject({
  /** Resuming a halted rollout: the failure threshold the operator now accepts. */
  maxFailures: RolloutAmount.optional(),
});
export type HubRolloutAction = z.infer<typeof HubRolloutAction>;
