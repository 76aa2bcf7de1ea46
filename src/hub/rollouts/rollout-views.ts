import type { HubDatabase } from '../db/open.js';
import type { RolloutDeviceRow, RolloutRow } from '../db/tables.js';
import {
  HUB_ROLLOUT_DEVICE_OUTCOMES,
  RolloutAmount,
  type HubRolloutDetail,
  type HubRolloutSummary,
} from '../../protocol/hub-rollouts-api.js';

/** The API's and the alert engine's view of rollouts, read from the database the engine writes. */
type Outcome = (typeof HUB_ROLLOUT_DEVICE_OUTCOMES)[number];
type Counts = Record<Outcome, number>;

const iso = (ms: number) => new Date(ms).toISOString();
const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

export async function listRollouts(hub: HubDatabase, limit = 200): Promise<HubRolloutSummary[]> {
  const rollouts = await hub.db.selectFrom('rollouts').selectAll().orderBy('created_at_ms', 'desc').limit(limit).execute();
  const counts = await countsOf(hub, rollouts.map((r) => r.rollout_id));
  return rollouts.map((row) => summaryOf(row, counts.get(row.rollout_id) ?? emptyCounts()));
}

export async function rolloutSummary(hub: HubDatabase, rolloutId: string): Promise<HubRolloutSummary | undefined> {
  const row = await rolloutRow(hub, rolloutId);
  return row && summaryOf(row, (await countsOf(hub, [rolloutId])).get(rolloutId) ?? emptyCounts());
}

const rolloutRow = (hub: HubDatabase, rolloutId: string) => hub.db.selectFrom('rollouts').selectAll().where('rollout_id', '=', rolloutId).executeTakeFirst();

/** Devices by outcome, counted in the database, per rollout. */
async function countsOf(hub: HubDatabase, rolloutIds: string[]): Promise<Map<string, Counts>> {
  const counts = new Map<string, Counts>();
  if (rolloutIds.length === 0) return counts;
  const counted = await hub.db
    .selectFrom('rollout_devices')
    .select(['rollout_id', 'outcome', (eb) => eb.fn.countAll<number>().as('n')])
    .where('rollout_id', 'in', rolloutIds)
    .groupBy(['rollout_id', 'outcome'])
    .execute();
  for (const c of counted) {
    const of = counts.get(c.rollout_id) ?? emptyCounts();
    of[c.outcome as Outcome] = Number(c.n);
    counts.set(c.rollout_id, of);
  }
  return counts;
}

export async function rolloutDetail(hub: HubDatabase, rolloutId: string): Promise<HubRolloutDetail | undefined> {
  const row = await rolloutRow(hub, rolloutId);
  if (!row) return undefined;
  const devices = await hub.db
    .selectFrom('rollout_devices')
    .selectAll()
    .where('rollout_id', '=', rolloutId)
    .orderBy('batch_index')
    .orderBy('device_id')
    .execute();
  const batches = Array.from({ length: row.batch_count }, (_, index) => batchOf(row, index, devices.filter((d) => d.batch_index === index)));
  return {
    ...summaryOf(row, countOf(devices)),
    canaries: row.canaries === 1,
    deviceTimeoutSeconds: row.device_timeout_seconds,
    watchSeconds: row.watch_seconds,
    batches,
  };
}

function batchOf(rollout: RolloutRow, index: number, devices: RolloutDeviceRow[]): HubRolloutDetail['batches'][number] {
  const sent = devices.map((d) => d.sent_at_ms).filter((t): t is number => t !== null);
  const open = devices.some((d) => ['pending', 'waiting-offline', 'sent', 'watching'].includes(d.outcome));
  const state =
    devices.every((d) => d.outcome === 'skipped') ? 'skipped' : !open ? 'done' : index <= rollout.current_batch && sent.length > 0 ? 'running' : 'waiting';
  const finished = devices.map((d) => d.finished_at_ms).filter((t): t is number => t !== null);
  return {
    index,
    state,
    startedAt: sent.length > 0 ? iso(Math.min(...sent)) : null,
    finishedAt: !open && finished.length > 0 ? iso(Math.max(...finished)) : null,
    devices: devices.map((d) => ({
      deviceId: d.device_id,
      commandId: d.command_id,
      outcome: d.outcome as Outcome,
      detail: d.detail,
      sentAt: isoOrNull(d.sent_at_ms),
      finishedAt: isoOrNull(d.finished_at_ms),
    })),
  };
}

export function summaryOf(row: RolloutRow, counts: Counts): HubRolloutSummary {
  return {
    rolloutId: row.rollout_id,
    kind: row.kind as HubRolloutSummary['kind'],
    description: row.description,
    state: row.state as HubRolloutSummary['state'],
    stateReason: row.state_reason,
    createdBy: row.created_by,
    createdAt: iso(row.created_at_ms),
    updatedAt: iso(row.updated_at_ms),
    deadline: iso(row.deadline_ms),
    currentBatch: row.current_batch,
    batchCount: row.batch_count,
    devices: Object.values(counts).reduce((a, b) => a + b, 0),
    counts,
    maxFailures: RolloutAmount.parse(JSON.parse(row.max_failures_json)),
  };
}

function emptyCounts(): Counts {
  return Object.fromEntries(HUB_ROLLOUT_DEVICE_OUTCOMES.map((o) => [o, 0])) as Counts;
}

function countOf(devices: readonly { outcome: string }[]): Counts {
  const counts = emptyCounts();
  for (const d of devices) counts[d.outcome as Outcome] += 1;
  return counts;
}
