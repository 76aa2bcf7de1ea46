import { isUtf8 } from 'node:buffer';
import type { Insertable, Transaction } from 'kysely';
import type { HubDatabase } from '../db/open.js';
import type { DeviceRow, HubTables } from '../db/tables.js';
import type { IngestItem } from './classify.js';
import { foldDevice, healthOf, type DeviceItem, type KnownFingerprint } from './device-state.js';
import { networkRates, type NetworkReading } from './network-rates.js';
import { recordPresence } from './presence-history.js';

/**
 * Commits one batch of received messages in ONE transaction: only after it returns may their PUBACKs go out. Each
 * report with a message id is stored once (received_messages is the key), device rows take the newest of
 * everything, invalid messages are kept aside and counted. A failure rolls everything back, so a retry (or a
 * redelivery by the broker after a crash) starts from the same state.
 */
export interface CommitOutcome {
  stored: number;
  duplicates: number;
  rejected: number;
}

export interface CommitOptions {
  conflictWindowMs: number;
  now?: () => number;
}

/** Rows per INSERT: well under SQLite's and PostgreSQL's bound parameter limits for the widest table here. */
const CHUNK = 200;
const EXCERPT_BYTES = 2048;

type Trx = Transaction<HubTables>;
type Keyed = Extract<DeviceItem, { messageId: string }>;

export async function commitBatch(hub: HubDatabase, items: readonly IngestItem[], options: CommitOptions): Promise<CommitOutcome> {
  const nowMs = (options.now ?? Date.now)();
  return hub.db.transaction().execute(async (trx) => {
    if (hub.dialect === 'sqlite') {
      // The first statement writes, so the transaction takes SQLite's write lock at once (waiting on busy_timeout)
      // instead of failing with SQLITE_BUSY when a second process committed between its first read and its write.
      await bumpCounter(trx, 'commits', 1);
    }
    const { fresh, duplicates } = await claimMessageIds(trx, items);
    await insertReports(trx, fresh);
    await recordPresence(trx, items);
    const rejected = items.filter((i): i is Extract<IngestItem, { channel: 'rejected' }> => i.channel === 'rejected');
    await keepRejected(trx, rejected);
    const freshSet = new Set<IngestItem>(fresh);
    // A duplicate changes nothing: its first copy already did.
    const deviceItems = items.filter(
      (i): i is DeviceItem => i.channel !== 'rejected' && i.channel !== 'ignored' && (!('messageId' in i) || freshSet.has(i)),
    );
    await updateDevices(trx, hub.dialect, deviceItems, fresh, { nowMs, conflictWindowMs: options.conflictWindowMs });
    return { stored: fresh.length + deviceItems.filter((i) => !('messageId' in i)).length, duplicates, rejected: rejected.length };
  });
}

/** The keyed reports not stored before (nor earlier in this batch); records their ids. */
async function claimMessageIds(trx: Trx, items: readonly IngestItem[]): Promise<{ fresh: Keyed[]; duplicates: number }> {
  const byKey = new Map<string, Keyed>();
  let duplicates = 0;
  for (const item of items) {
    if (!('messageId' in item)) continue;
    const key = `${item.deviceId}\n${item.messageId}`;
    if (byKey.has(key)) duplicates += 1;
    else byKey.set(key, item);
  }
  const fresh: Keyed[] = [];
  for (const chunk of chunks([...byKey.values()])) {
    const claimed = await trx
      .insertInto('received_messages')
      .values(chunk.map((i) => ({ device_id: i.deviceId, message_id: i.messageId, received_at_ms: i.receivedAtMs })))
      .onConflict((oc) => oc.columns(['device_id', 'message_id']).doNothing())
      .returning(['device_id', 'message_id'])
      .execute();
    const claimedKeys = new Set(claimed.map((r) => `${r.device_id}\n${r.message_id}`));
    for (const item of chunk) {
      if (claimedKeys.has(`${item.deviceId}\n${item.messageId}`)) fresh.push(item);
      else duplicates += 1;
    }
  }
  return { fresh, duplicates };
}

async function insertReports(trx: Trx, fresh: readonly Keyed[]): Promise<void> {
  const samples: Insertable<HubTables['status_samples']>[] = [];
  const readings: NetworkReading[] = [];
  const events: Insertable<HubTables['events']>[] = [];
  const results: Insertable<HubTables['command_results']>[] = [];
  for (const item of fresh) {
    if (item.channel === 'status') {
      const s = item.status;
      samples.push({
        device_id: item.deviceId,
        sampled_at_ms: Date.parse(s.sampledAt),
        received_at_ms: item.receivedAtMs,
        seq: s.seq,
        historical: s.historical ? 1 : 0,
        cpu_percent: s.cpu.percent ?? null,
        memory_available_bytes: s.memory?.availableBytes ?? null,
        memory_total_bytes: s.memory?.totalBytes ?? null,
        temperature_c: s.temperatureC ?? null,
        k3s_healthy: s.k3s.healthy ? 1 : 0,
        disk_free_bytes: s.disks.find((d) => d.name === 'state')?.freeBytes ?? null,
        network_rx_bytes: s.network?.rxBytes ?? null,
        network_tx_bytes: s.network?.txBytes ?? null,
      });
      readings.push({
        deviceId: item.deviceId, sampledAtMs: Date.parse(s.sampledAt), rxBytes: s.network?.rxBytes ?? null, txBytes: s.network?.txBytes ?? null,
        uptimeSeconds: s.uptimeSeconds ?? null,
      });
    } else if (item.channel === 'events') {
      const e = item.event;
      events.push({
        device_id: item.deviceId, message_id: item.messageId, kind: e.kind, event_key: e.key ?? null, state: e.state,
        severity: e.severity, message: e.message, occurred_at_ms: Date.parse(e.occurredAt), received_at_ms: item.receivedAtMs,
        payload_json: item.payload,
      });
    } else {
      const r = item.result;
      results.push({
        device_id: item.deviceId, message_id: item.messageId, command_id: r.commandId, command_type: r.type,
        status: r.status, reason: 'reason' in r && typeof r.reason === 'string' ? r.reason : null, at_ms: r.at,
        received_at_ms: item.receivedAtMs, payload_json: item.payload,
      });
    }
  }
  const rates = await networkRates(trx, readings);
  const sampleRows = samples.map((row, i) => ({ ...row, network_rx_rate: rates[i]!.rx, network_tx_rate: rates[i]!.tx }));
  for (const chunk of chunks(sampleRows)) await trx.insertInto('status_samples').values(chunk).execute();
  for (const chunk of chunks(events)) await trx.insertInto('events').values(chunk).execute();
  for (const chunk of chunks(results)) await trx.insertInto('command_results').values(chunk).execute();
}

async function keepRejected(trx: Trx, rejected: readonly Extract<IngestItem, { channel: 'rejected' }>[]): Promise<void> {
  if (rejected.length === 0) return;
  for (const chunk of chunks(rejected)) {
    await trx
      .insertInto('rejected_messages')
      .values(
        chunk.map((r) => ({
          topic: r.topic.slice(0, 512),
          device_id: r.deviceId,
          reason: r.reason.slice(0, 1024),
          received_at_ms: r.receivedAtMs,
          size_bytes: r.payload.length,
          payload_excerpt: excerpt(r.payload),
        })),
      )
      .execute();
  }
  await bumpCounter(trx, 'rejected_total', rejected.length);
}

function excerpt(payload: Buffer): string {
  const head = payload.subarray(0, EXCERPT_BYTES);
  // PostgreSQL text cannot hold NUL; anything not plain UTF-8 is kept as base64.
  return isUtf8(head) && !head.includes(0) ? head.toString('utf8') : `base64:${head.toString('base64')}`;
}

export async function bumpCounter(trx: Trx, name: string, by: number): Promise<void> {
  await trx
    .insertInto('hub_counters')
    .values({ name, value: by })
    .onConflict((oc) => oc.column('name').doUpdateSet((eb) => ({ value: eb(eb.ref('hub_counters.value'), '+', by) })))
    .execute();
}

async function updateDevices(
  trx: Trx,
  dialect: HubDatabase['dialect'],
  items: readonly DeviceItem[],
  fresh: readonly Keyed[],
  context: { nowMs: number; conflictWindowMs: number },
): Promise<void> {
  if (items.length === 0) return;
  const byDevice = new Map<string, DeviceItem[]>();
  for (const item of items) byDevice.set(item.deviceId, [...(byDevice.get(item.deviceId) ?? []), item]);
  const ids = [...byDevice.keys()].sort();
  let query = trx.selectFrom('devices').selectAll().where('device_id', 'in', ids).orderBy('device_id');
  // Replicas on PostgreSQL commit at once: the rows are locked in one order (sorted), so they wait, never deadlock.
  if (dialect === 'postgres') query = query.forUpdate();
  const current = new Map((await query.execute()).map((r) => [r.device_id, r]));
  const known = await knownFingerprints(trx, items);
  const rows: DeviceRow[] = [];
  const sightingRows: Insertable<HubTables['device_fingerprints']>[] = [];
  for (const id of ids) {
    const { row, sightings } = foldDevice(current.get(id), byDevice.get(id)!, { ...context, known: known.get(id) ?? [] });
    rows.push(row);
    for (const s of sightings) {
      sightingRows.push({ device_id: id, fingerprint: s.fingerprint, first_seen_ms: s.atMs, last_seen_ms: s.atMs, switches: s.switched ? 1 : 0 });
    }
  }
  await applyConditions(trx, fresh);
  const health = await openSeverities(trx, ids);
  for (const row of rows) row.health = healthOf(health.get(row.device_id) ?? [], row.k3s_healthy);
  for (const chunk of chunks(rows)) {
    await trx
      .insertInto('devices')
      .values(chunk)
      .onConflict((oc) =>
        oc.column('device_id').doUpdateSet((eb) => {
          const set: Record<string, unknown> = {};
          for (const column of Object.keys(chunk[0]!) as (keyof DeviceRow)[]) {
            if (column !== 'device_id') set[column] = eb.ref(`excluded.${column}`);
          }
          return set;
        }),
      )
      .execute();
  }
  for (const sighting of sightingRows) {
    await trx
      .insertInto('device_fingerprints')
      .values(sighting)
      .onConflict((oc) =>
        oc.columns(['device_id', 'fingerprint']).doUpdateSet((eb) => ({
          last_seen_ms: eb.ref('excluded.last_seen_ms'),
          switches: eb(eb.ref('device_fingerprints.switches'), '+', eb.ref('excluded.switches')),
        })),
      )
      .execute();
  }
}

async function knownFingerprints(trx: Trx, items: readonly DeviceItem[]): Promise<Map<string, KnownFingerprint[]>> {
  const ids = [...new Set(items.filter((i) => i.channel === 'inventory').map((i) => i.deviceId))];
  const known = new Map<string, KnownFingerprint[]>();
  if (ids.length === 0) return known;
  const rows = await trx.selectFrom('device_fingerprints').select(['device_id', 'fingerprint', 'last_seen_ms']).where('device_id', 'in', ids).execute();
  for (const r of rows) known.set(r.device_id, [...(known.get(r.device_id) ?? []), { fingerprint: r.fingerprint, lastSeenMs: r.last_seen_ms }]);
  return known;
}

/** Raised conditions stay open until cleared; they make the device's health. Events apply in their own order. */
async function applyConditions(trx: Trx, fresh: readonly Keyed[]): Promise<void> {
  const events = fresh
    .flatMap((i) => (i.channel === 'events' && i.event.state !== 'occurred' ? [{ deviceId: i.deviceId, event: i.event }] : []))
    .sort((a, b) => Date.parse(a.event.occurredAt) - Date.parse(b.event.occurredAt));
  for (const { deviceId, event } of events) {
    const key = { device_id: deviceId, kind: event.kind, condition_key: event.key ?? '' };
    const raisedAt = Date.parse(event.occurredAt);
    const existing = await trx
      .selectFrom('open_conditions')
      .select('raised_at_ms')
      .where('device_id', '=', key.device_id)
      .where('kind', '=', key.kind)
      .where('condition_key', '=', key.condition_key)
      .executeTakeFirst();
    // A cleared event older than the raise it would end belongs to an earlier episode (a late backlog).
    if (event.state === 'cleared') {
      if (existing && existing.raised_at_ms <= raisedAt) {
        await trx.deleteFrom('open_conditions').where('device_id', '=', key.device_id).where('kind', '=', key.kind).where('condition_key', '=', key.condition_key).execute();
      }
      continue;
    }
    await trx
      .insertInto('open_conditions')
      .values({ ...key, severity: event.severity, raised_at_ms: raisedAt })
      .onConflict((oc) =>
        oc.columns(['device_id', 'kind', 'condition_key']).doUpdateSet((eb) => ({
          severity: eb.ref('excluded.severity'),
          raised_at_ms: eb.ref('excluded.raised_at_ms'),
        })),
      )
      .execute();
  }
}

async function openSeverities(trx: Trx, ids: readonly string[]): Promise<Map<string, string[]>> {
  const rows = await trx.selectFrom('open_conditions').select(['device_id', 'severity']).where('device_id', 'in', ids).execute();
  const map = new Map<string, string[]>();
  for (const r of rows) map.set(r.device_id, [...(map.get(r.device_id) ?? []), r.severity]);
  return map;
}

function chunks<T>(rows: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += CHUNK) out.push(rows.slice(i, i + CHUNK));
  return out;
}
