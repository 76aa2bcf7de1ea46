import { z } from 'zod';
import { DeviceIdSchema } from './ids.js';
import { COMMAND_TYPES } from './command.js';
import { SCHEMA_VERSION } from './topics.js';

/**
 * What a device publishes on its results topic about a command (wire contract v1). Every command that reaches
 * a device gets at least one result: `rejected` (nothing ran) or `accepted` followed by `progress` and exactly one
 * final `succeeded` or `failed`. A crash between steps may repeat a result, never lose the final one.
 */

/** Why a device refused a command, in the order the checks run. */
export const REJECT_REASONS = [
  'too_large',
  'malformed',
  'bad_args',
  'unknown_key',
  'revoked_key',
  'key_expired',
  'bad_signature',
  'out_of_scope',
  'wrong_target',
  'expired',
  'not_yet_valid',
  'lifetime_too_long',
  'replayed',
  'busy',
  'disabled',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** The command id is unknown when the payload was too broken to read one. */
const CommandId = z.string().max(64).nullable();
const Detail = z.string().max(2048);
// Not strict: the outbox adds its own fields (messageId) to every payload, and later versions may add more.

const base = {
  schemaVersion: z.literal(SCHEMA_VERSION),
  commandId: CommandId,
  deviceId: DeviceIdSchema,
  type: z.enum(COMMAND_TYPES).nullable(),
  at: z.int().min(0),
  /** Set by the outbox: the same on every re-send, for deduplication downstream. */
  messageId: z.string().max(64).optional(),
  /** Set by the link when the result is sent from the backlog after an outage. */
  historical: z.boolean().optional(),
};

export const RejectedResultSchema = z.object({
  ...base,
  status: z.literal('rejected'),
  reason: z.enum(REJECT_REASONS),
  detail: Detail,
});
export const AcceptedResultSchema = z.object({ ...base, status: z.literal('accepted') });
export const ProgressResultSchema = z.object({
  ...base,
  status: z.literal('progress'),
  step: z.string().min(1).max(64),
  detail: Detail.optional(),
  /** Step-specific data, e.g. one chunk of collected logs. */
  data: z.record(z.string(), z.unknown()).optional(),
});
export const SucceededResultSchema = z.object({
  ...base,
  status: z.literal('succeeded'),
  detail: Detail.optional(),
  data: z.record(z.string(), z.unknown()).optional(),
});
export const FailedResultSchema = z.object({
  ...base,
  status: z.literal('failed'),
  reason: z.string().min(1).max(64),
  detail: Detail,
});

export const CommandResultSchema = z.discriminatedUnion('status', [
  RejectedResultSchema,
  AcceptedResultSchema,
  ProgressResultSchema,
  SucceededResultSchema,
  FailedResultSchema,
]);
export type CommandResult = z.output<typeof CommandResultSchema>;
export type CommandResultStatus = CommandResult['status'];
export const FINAL_STATUSES: readonly CommandResultStatus[] = ['rejected', 'succeeded', 'failed'];

/** Bounds a free-text detail so that a long error message cannot push a result over the size limit. */
export function boundedDetail(text: string): string {
  return text.length <= 2048 ? text : `${text.slice(0, 2030)}... (truncated)`;
}

export const RESULT_EXAMPLE: CommandResult = {
  schemaVersion: SCHEMA_VERSION,
  commandId: 'c-5f1e2d3c4b5a6978',
  deviceId: 'pi-kitchen-01',
  type: 'k3s.upgrade',
  at: 1_772_352_061_000,
  status: 'failed',
  reason: 'rolled_back',
  detail: 'v1.36.3+k3s1 was not healthy within 300 s; v1.35.2+k3s1 restored and healthy',
};
