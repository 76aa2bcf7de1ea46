import { sql, type Expression, type ExpressionBuilder, type SqlBool } from 'kysely';
import type { HubDatabase } from '../db/open.js';
import type { DeviceRow, HubTables } from '../db/tables.js';
import type { DeviceDetail, DeviceList, DeviceListQuery, DeviceSummary } from '../../protocol/hub-api.js';
import { deviceEnrolment } from '../enrolment/device-enrolment.js';

const SORT_COLUMNS = {
  deviceId: 'device_id',
  name: 'name',
  lastSeen: 'last_seen_ms',
  health: 'health',
  fleetletVersion: 'fleetlet_version',
  k3sVersion: 'k3s_version',
} as const;

type Devices = ExpressionBuilder<HubTables, 'devices'>;

/** `GET /api/v1/devices`: one page of devices matching every filter, sorted, with the total over all pages. */
export async function listDevices(hub: HubDatabase, query: DeviceListQuery): Promise<DeviceList> {
  const where = (eb: Devices) => eb.and(filters(hub, eb, query));
  const total = await hub.db
    .selectFrom('devices')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where(where)
    .executeTakeFirstOrThrow();
  const column = SORT_COLUMNS[query.sort];
  const rows = await hub.db
    .selectFrom('devices')
    .selectAll()
    .where(where)
    // NULLs sort as the empty string so that both databases order them alike (first ascending).
    .orderBy(column === 'last_seen_ms' ? sql.ref(column) : sql`coalesce(${sql.ref(column)}, '')`, query.order)
    .orderBy('device_id', query.order)
    .limit(query.limit)
    .offset(query.offset)
    .execute();
  return { devices: rows.map(summaryOf), total: Number(total.n), limit: query.limit, offset: query.offset };
}

function filters(hub: HubDatabase, eb: Devices, query: DeviceListQuery): Expression<SqlBool>[] {
  const conditions: Expression<SqlBool>[] = [];
  for (const pair of query.label ?? []) {
    const at = pair.indexOf('=');
    const entry = `${JSON.stringify(pair.slice(0, at))}:${JSON.stringify(pair.slice(at + 1))}`;
    conditions.push(jsonMember(hub, 'labels_json', entry, '{'));
  }
  if (query.group) conditions.push(jsonMember(hub, 'groups_json', JSON.stringify(query.group), '['));
  if (query.state === 'unknown') conditions.push(eb('presence_state', 'is', null));
  else if (query.state) conditions.push(eb('presence_state', '=', query.state));
  if (query.version) conditions.push(eb('fleetlet_version', '=', query.version));
  if (query.k3sVersion) conditions.push(eb('k3s_version', '=', query.k3sVersion));
  if (query.health) conditions.push(eb('health', '=', query.health));
  if (query.identityConflict) conditions.push(eb('identity_conflict', '=', query.identityConflict === 'true' ? 1 : 0));
  return conditions;
}

/**
 * Whether a JSON object or array, stored as JSON.stringify writes it (no spaces), holds `member` (`"key":"value"`
 * or `"group"`) as a whole member: it must follow the opening bracket or a comma and be followed by a comma or the
 * closing bracket. Inside a JSON string every quote is escaped, so these needles cannot match within a value.
 */
function jsonMember(hub: HubDatabase, column: 'labels_json' | 'groups_json', member: string, open: '{' | '['): Expression<SqlBool> {
  const close = open === '{' ? '}' : ']';
  const needles = [open, ','].flatMap((before) => [',', close].map((after) => `${before}${member}${after}`));
  const find = hub.dialect === 'sqlite' ? 'instr' : 'strpos';
  const tests = needles.map((needle) => sql<SqlBool>`${sql.raw(find)}(${sql.ref(column)}, ${needle}) > 0`);
  return sql<SqlBool>`(${sql.join(tests, sql` OR `)})`;
}

/** `GET /api/v1/devices/{id}`, or undefined for a device never heard from. */
export async function deviceDetail(hub: HubDatabase, deviceId: string): Promise<DeviceDetail | undefined> {
  const row = await hub.db.selectFrom('devices').selectAll().where('device_id', '=', deviceId).executeTakeFirst();
  if (!row) return undefined;
  const fingerprints = await hub.db
    .selectFrom('device_fingerprints')
    .selectAll()
    .where('device_id', '=', deviceId)
    .orderBy('first_seen_ms')
    .limit(100)
    .execute();
  const conditions = await hub.db
    .selectFrom('open_conditions')
    .selectAll()
    .where('device_id', '=', deviceId)
    .orderBy('raised_at_ms')
    .limit(200)
    .execute();
  return {
    ...summaryOf(row),
    firstSeen: iso(row.first_seen_ms),
    presence: {
      bootSequence: row.presence_boot_sequence,
      at: isoOrNull(row.presence_at_ms),
      reason: row.presence_reason,
    },
    inventory: parseObject(row.inventory_json),
    status: parseObject(row.status_json),
    statusSampledAt: isoOrNull(row.status_sampled_at_ms),
    fingerprints: fingerprints.map((f) => ({
      fingerprint: f.fingerprint,
      firstSeen: iso(f.first_seen_ms),
      lastSeen: iso(f.last_seen_ms),
      switches: f.switches,
    })),
    openConditions: conditions.map((c) => ({ kind: c.kind, key: c.condition_key, severity: c.severity, raisedAt: iso(c.raised_at_ms) })),
    identityConflictAt: isoOrNull(row.identity_conflict_at_ms),
    enrolment: await deviceEnrolment(hub, deviceId),
  };
}

export function summaryOf(row: DeviceRow): DeviceSummary {
  return {
    deviceId: row.device_id,
    name: row.name,
    state: row.presence_state === 'online' || row.presence_state === 'offline' ? row.presence_state : 'unknown',
    lastSeen: iso(row.last_seen_ms),
    fleetletVersion: row.fleetlet_version,
    k3sVersion: row.k3s_version,
    k3sState: row.k3s_state,
    k3sHealthy: row.k3s_healthy === null ? null : row.k3s_healthy === 1,
    health: row.health,
    labels: stringRecord(parseObject(row.labels_json)),
    groups: stringArray(row.groups_json),
    identityConflict: row.identity_conflict === 1,
    vitals: vitalsOf(parseObject(row.status_json)),
  };
}

/** The fleet table's figures from a stored status sample (validated on receipt; read defensively all the same). */
function vitalsOf(status: Record<string, unknown> | null): DeviceSummary['vitals'] {
  if (!status) return null;
  const cpu = status.cpu as { percent?: unknown } | undefined;
  const memory = status.memory as { totalBytes?: unknown; availableBytes?: unknown } | undefined;
  const depth = (status.outbox as { depth?: Record<string, unknown> } | undefined)?.depth;
  const total = typeof memory?.totalBytes === 'number' && memory.totalBytes > 0 ? memory.totalBytes : undefined;
  const available = typeof memory?.availableBytes === 'number' ? memory.availableBytes : undefined;
  const backlog = depth ? Object.values(depth).filter((n): n is number => typeof n === 'number') : [];
  return {
    cpuPercent: numberOrNull(cpu?.percent),
    memoryUsedPercent: total !== undefined && available !== undefined ? Math.round(((total - available) / total) * 1000) / 10 : null,
    temperatureC: numberOrNull(status.temperatureC),
    outboxBacklog: backlog.length > 0 ? backlog.reduce((a, b) => a + b, 0) : null,
  };
}

function numberOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : iso(ms);
}

/** Stored JSON was validated on receipt; a row that still does not parse shows as null rather than failing the page. */
export function parseObject(json: string | null): Record<string, unknown> | null {
  if (json === null) return null;
  try {
    const value: unknown = JSON.parse(json);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function stringRecord(value: Record<string, unknown> | null): Record<string, string> {
  return Object.fromEntries(Object.entries(value ?? {}).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
}

function stringArray(json: string | null): string[] {
  try {
    const value: unknown = JSON.parse(json ?? '[]');
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  } catch {
    return [];
  }
}
