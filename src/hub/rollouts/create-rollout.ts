import type { HubDatabase } from '../db/open.js';
import { ApiRequestError } from '../api/errors.js';
import { parseCommandArgs, type CommandEnvelope } from '../../protocol/command.js';
import type { HubRolloutCreate } from '../../protocol/hub-rollouts-api.js';

/** Rows per INSERT: well under the bound parameter limits of SQLite and PostgreSQL for rollout_devices. */
const CHUNK = 200;

/**
 * Stores a new rollout with the envelopes the operator signed. The hub cannot check a signature (it holds no trust
 * anchor; the devices do), but it refuses what it can see is wrong before anything is sent: an envelope for
 * another device or of another kind, args its type does not take, an id used twice, or one that expires before the
 * rollout's deadline (it would be refused by the device as expired while the hub still waits for it).
 */
export async function createRollout(hub: HubDatabase, create: HubRolloutCreate, createdBy: string, now: number): Promise<void> {
  const deadlineMs = Date.parse(create.deadline);
  if (deadlineMs <= now) throw new ApiRequestError(400, 'deadline: the deadline has passed already', 'deadline');
  const commandIds = new Set<string>();
  for (const [deviceId, envelope] of Object.entries(create.commands)) {
    const problem = envelopeProblem(deviceId, envelope, create.kind, deadlineMs);
    if (problem) throw new ApiRequestError(400, `commands.${deviceId}: ${problem}`, `commands.${deviceId}`);
    if (commandIds.has(envelope.id)) throw new ApiRequestError(400, `commands.${deviceId}: command id ${envelope.id} is used for another device too`, `commands.${deviceId}`);
    commandIds.add(envelope.id);
  }
  const rows = create.batches.flatMap((batch, batchIndex) =>
    batch.map((deviceId) => {
      const envelope = create.commands[deviceId]!;
      return {
        rollout_id: create.rolloutId,
        device_id: deviceId,
        batch_index: batchIndex,
        command_id: envelope.id,
        envelope_json: JSON.stringify(envelope),
        outcome: 'pending',
      };
    }),
  );
  await hub.db.transaction().execute(async (trx) => {
    const inserted = await trx
      .insertInto('rollouts')
      .values({
        rollout_id: create.rolloutId,
        kind: create.kind,
        description: create.description,
        state: 'running',
        state_reason: null,
        created_by: createdBy,
        created_at_ms: now,
        updated_at_ms: now,
        deadline_ms: deadlineMs,
        canaries: create.canaries ? 1 : 0,
        max_failures_json: JSON.stringify(create.maxFailures),
        threshold_raised: 0,
        device_timeout_seconds: create.deviceTimeoutSeconds,
        watch_seconds: create.watchSeconds,
        batch_count: create.batches.length,
        current_batch: 0,
      })
      .onConflict((oc) => oc.column('rollout_id').doNothing())
      .returning('rollout_id')
      .executeTakeFirst();
    if (!inserted) throw new ApiRequestError(400, `rolloutId: a rollout ${create.rolloutId} exists already`, 'rolloutId');
    for (let i = 0; i < rows.length; i += CHUNK) await trx.insertInto('rollout_devices').values(rows.slice(i, i + CHUNK)).execute();
  });
}

function envelopeProblem(deviceId: string, envelope: CommandEnvelope, kind: string, deadlineMs: number): string | undefined {
  if (!('device' in envelope.target) || envelope.target.device !== deviceId) {
    return `the signed command targets ${JSON.stringify(envelope.target)}, not the device ${deviceId}`;
  }
  if (envelope.type !== kind) return `the signed command is a ${envelope.type}, not the rollout's ${kind}`;
  const args = parseCommandArgs(envelope);
  if (!args.ok) return `the signed command's ${args.message}`;
  if (envelope.expiresAt < deadlineMs) return `the signed command expires at ${new Date(envelope.expiresAt).toISOString()}, before the rollout's deadline`;
  return undefined;
}
