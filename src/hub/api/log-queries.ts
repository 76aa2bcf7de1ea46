import type { HubDatabase } from '../db/open.js';
import type { EventRow } from '../db/tables.js';
import { iso, parseObject } from './device-queries.js';
import type { z } from 'zod';
import type { AuditList, EventItem, EventList, EventsQuery, ResultList, ResultsQuery } from '../../protocol/hub-api.js';

/** `GET /api/v1/events`: newest first, one page; `before` continues from a previous page's `nextBefore`. */
export async function listEvents(hub: HubDatabase, query: EventsQuery): Promise<EventList> {
  let select = hub.db.selectFrom('events').selectAll();
  if (query.device) select = select.where('device_id', '=', query.device);
  if (query.kind) select = select.where('kind', '=', query.kind);
  if (query.severity) select = select.where('severity', '=', query.severity);
  if (query.from) select = select.where('occurred_at_ms', '>=', Date.parse(query.from));
  if (query.to) select = select.where('occurred_at_ms', '<', Date.parse(query.to));
  if (query.before) select = select.where('id', '<', query.before);
  const { page, nextBefore } = pageOf(await select.orderBy('id', 'desc').limit(query.limit + 1).execute(), query.limit);
  return { events: page.map(eventItemOf), nextBefore };
}

/** A page, newest first, from one row more than the page holds: that extra row says whether another page follows. */
function pageOf<R extends { id: number }>(rows: R[], limit: number): { page: R[]; nextBefore: number | null } {
  const page = rows.slice(0, limit);
  return { page, nextBefore: rows.length > limit ? page[page.length - 1]!.id : null };
}

export function eventItemOf(row: EventRow): z.infer<typeof EventItem> {
  return {
    id: row.id,
    deviceId: row.device_id,
    kind: row.kind,
    key: row.event_key,
    state: row.state,
    severity: row.severity,
    message: row.message,
    remedy: stringOrNull(parseObject(row.payload_json)?.remedy),
    occurredAt: iso(row.occurred_at_ms),
    receivedAt: iso(row.received_at_ms),
  };
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

/** `GET /api/v1/results`: command results, newest first, one page. */
export async function listResults(hub: HubDatabase, query: ResultsQuery): Promise<ResultList> {
  let select = hub.db.selectFrom('command_results').selectAll();
  if (query.device) select = select.where('device_id', '=', query.device);
  if (query.commandId) select = select.where('command_id', '=', query.commandId);
  if (query.status) select = select.where('status', '=', query.status);
  if (query.from) select = select.where('at_ms', '>=', Date.parse(query.from));
  if (query.to) select = select.where('at_ms', '<', Date.parse(query.to));
  if (query.before) select = select.where('id', '<', query.before);
  const { page, nextBefore } = pageOf(await select.orderBy('id', 'desc').limit(query.limit + 1).execute(), query.limit);
  return {
    results: page.map((r) => ({
      id: r.id,
      deviceId: r.device_id,
      commandId: r.command_id,
      commandType: r.command_type,
      status: r.status,
      reason: r.reason,
      at: iso(r.at_ms),
      receivedAt: iso(r.received_at_ms),
      result: parseObject(r.payload_json) ?? {},
    })),
    nextBefore,
  };
}

/** `GET /api/v1/audit`: who changed what, newest first. */
export async function listAudit(hub: HubDatabase, query: { before?: number | undefined; limit: number }): Promise<AuditList> {
  let select = hub.db.selectFrom('audit_log').selectAll();
  if (query.before) select = select.where('id', '<', query.before);
  const { page, nextBefore } = pageOf(await select.orderBy('id', 'desc').limit(query.limit + 1).execute(), query.limit);
  return {
    entries: page.map((r) => ({ id: r.id, at: iso(r.at_ms), actor: r.actor, action: r.action, target: r.target, remoteAddr: r.remote_addr })),
    nextBefore,
  };
}
