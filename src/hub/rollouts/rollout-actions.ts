import type { HubDatabase } from '../db/open.js';
import { ApiRequestError } from '../api/errors.js';
import type { HubRolloutAction, RolloutAmount } from '../../protocol/hub-rollouts-api.js';

/**
 * An operator's pause, resume or abort, as one conditional update each: the engine writes its own changes with
 * conditions too (a halt only of a running rollout), so whichever comes second sees the first.
 */
export type RolloutActionName = 'pause' | 'resume' | 'abort';

export async function applyRolloutAction(
  hub: HubDatabase,
  rolloutId: string,
  action: RolloutActionName,
  body: HubRolloutAction,
  actor: string,
  now: number,
): Promise<void> {
  const row = await hub.db.selectFrom('rollouts').select(['state', 'max_failures_json']).where('rollout_id', '=', rolloutId).executeTakeFirst();
  if (!row) throw new ApiRequestError(404, `no rollout "${rolloutId}"`);
  if (action !== 'resume' && body.maxFailures) throw new ApiRequestError(400, `maxFailures: only a resume takes a new threshold`, 'maxFailures');
  if (action === 'pause') return change(hub, rolloutId, ['running'], { state: 'paused', state_reason: `paused by ${actor}` }, row.state, now);
  if (action === 'resume') return resume(hub, rolloutId, row.state, body.maxFailures, now);
  await hub.db.transaction().execute(async (trx) => {
    const ended = await trx
      .updateTable('rollouts')
      .set({ state: 'aborted', state_reason: `aborted by ${actor}`, updated_at_ms: now })
      .where('rollout_id', '=', rolloutId)
      .where('state', 'in', ['running', 'paused', 'halted'])
      .executeTakeFirst();
    if (Number(ended.numUpdatedRows) === 0) throw new ApiRequestError(400, `rollout ${rolloutId} is ${row.state}: only a running, paused or halted one can be aborted`);
    await trx
      .updateTable('rollout_devices')
      .set({ outcome: 'skipped', detail: `rollout aborted by ${actor}`, finished_at_ms: now })
      .where('rollout_id', '=', rolloutId)
      .where('outcome', 'in', ['pending', 'waiting-offline'])
      .execute();
  });
}

async function resume(hub: HubDatabase, rolloutId: string, state: string, maxFailures: RolloutAmount | undefined, now: number): Promise<void> {
  if (state === 'halted') {
    if (!maxFailures) throw new ApiRequestError(400, `maxFailures: rollout ${rolloutId} halted; resuming it needs the failure threshold you now accept`, 'maxFailures');
    return change(
      hub,
      rolloutId,
      ['halted'],
      { state: 'running', state_reason: null, max_failures_json: JSON.stringify(maxFailures), threshold_raised: 1 },
      state,
      now,
    );
  }
  return change(hub, rolloutId, ['paused'], { state: 'running', state_reason: null, ...(maxFailures ? { max_failures_json: JSON.stringify(maxFailures) } : {}) }, state, now);
}

async function change(
  hub: HubDatabase,
  rolloutId: string,
  from: string[],
  set: { state: string; state_reason: string | null; max_failures_json?: string; threshold_raised?: number },
  current: string,
  now: number,
): Promise<void> {
  const updated = await hub.db
    .updateTable('rollouts')
    .set({ ...set, updated_at_ms: now })
    .where('rollout_id', '=', rolloutId)
    .where('state', 'in', from)
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) === 0) throw new ApiRequestError(400, `rollout ${rolloutId} is ${current}, not ${from.join(' or ')}`);
}
