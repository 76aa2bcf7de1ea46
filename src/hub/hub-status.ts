import type { HubDatabase } from './db/open.js';

/** What `fleetlet hub status` shows, read from the database (so it works beside running replicas, or without one). */
export interface HubStatus {
  database: { dialect: string; location: string; bytes: number };
  devices: { total: number; online: number; offline: number; identityConflicts: number; health: Record<string, number> };
  rows: Record<string, number>;
  rejectedTotal: number;
  /** Reports stored in the last minute, by the time they were received. */
  storedLastMinute: number;
  lastStoredAtMs: number | null;
}

const COUNTED = ['status_samples', 'status_rollups', 'events', 'command_results', 'received_messages', 'rejected_messages'] as const;

export async function readHubStatus(hub: HubDatabase, nowMs = Date.now()): Promise<HubStatus> {
  const { db } = hub;
  const devices = await db
    .selectFrom('devices')
    .select(['presence_state', 'health', 'identity_conflict', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy(['presence_state', 'health', 'identity_conflict'])
    .execute();
  const summary = { total: 0, online: 0, offline: 0, identityConflicts: 0, health: {} as Record<string, number> };
  for (const group of devices) {
    const n = Number(group.n);
    summary.total += n;
    if (group.presence_state === 'online') summary.online += n;
    else summary.offline += n;
    if (group.identity_conflict) summary.identityConflicts += n;
    summary.health[group.health] = (summary.health[group.health] ?? 0) + n;
  }
  const rows: Record<string, number> = {};
  for (const table of COUNTED) {
    rows[table] = Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
  }
  let storedLastMinute = 0;
  let lastStoredAtMs: number | null = null;
  for (const table of ['status_samples', 'events', 'command_results'] as const) {
    const recent = await db
      .selectFrom(table)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('received_at_ms', '>=', nowMs - 60_000)
      .executeTakeFirstOrThrow();
    storedLastMinute += Number(recent.n);
    const newest = await db.selectFrom(table).select((eb) => eb.fn.max('received_at_ms').as('newest')).executeTakeFirstOrThrow();
    if (newest.newest !== null) lastStoredAtMs = Math.max(lastStoredAtMs ?? 0, Number(newest.newest));
  }
  const rejected = await db.selectFrom('hub_counters').select('value').where('name', '=', 'rejected_total').executeTakeFirst();
  return {
    database: { dialect: hub.dialect, location: hub.location, bytes: await hub.sizeBytes() },
    devices: summary,
    rows,
    rejectedTotal: Number(rejected?.value ?? 0),
    storedLastMinute,
    lastStoredAtMs,
  };
}
