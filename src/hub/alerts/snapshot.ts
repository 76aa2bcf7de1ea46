import type { HubAlertsConfig } from '../../config/hub-alerts-schema.js';
import type { HubDatabase } from '../db/open.js';

/**
 * What the device rules read, taken from the database in a few queries per evaluation (so every replica, and a
 * restarted one, sees the same): each device's presence, newest status and identity flag, the conditions it raised
 * and has not cleared, and the newest k3s events of the kinds that alert, within their windows.
 */
export interface DeviceFacts {
  deviceId: string;
  name: string | null;
  presenceState: string | null;
  presenceAtMs: number | null;
  presenceReason: string | null;
  /** devices.status_json, unparsed (parsed only by the rules that need it). */
  statusJson: string | null;
  statusSampledAtMs: number | null;
  identityConflict: boolean;
  identityConflictAtMs: number | null;
  /** Open conditions by kind, with their keys (e.g. disk.low -> ['k3s']). */
  conditions: Map<string, string[]>;
  /** The newest event of each alerting kind within the window, by kind. */
  newestEvents: Map<string, { occurredAtMs: number; message: string }>;
}

export const CONDITION_KINDS = ['disk.low', 'temperature.high', 'power.under-voltage'] as const;
export const EVENT_KINDS_READ = ['k3s.crash-loop', 'k3s.password-rejected', 'k3s.token-rejected', 'k3s.up'] as const;

export async function readDeviceFacts(hub: HubDatabase, config: HubAlertsConfig, nowMs: number): Promise<DeviceFacts[]> {
  const rows = await hub.db
    .selectFrom('devices')
    .select([
      'device_id', 'name', 'presence_state', 'presence_at_ms', 'presence_reason', 'status_json', 'status_sampled_at_ms',
      'identity_conflict', 'identity_conflict_at_ms',
    ])
    // A stable order: alerts of one evaluation get their ids by device.
    .orderBy('device_id')
    .execute();
  const facts = new Map<string, DeviceFacts>();
  for (const r of rows) {
    facts.set(r.device_id, {
      deviceId: r.device_id,
      name: r.name,
      presenceState: r.presence_state,
      presenceAtMs: r.presence_at_ms,
      presenceReason: r.presence_reason,
      statusJson: r.status_json,
      statusSampledAtMs: r.status_sampled_at_ms,
      identityConflict: r.identity_conflict === 1,
      identityConflictAtMs: r.identity_conflict_at_ms,
      conditions: new Map(),
      newestEvents: new Map(),
    });
  }
  const conditions = await hub.db
    .selectFrom('open_conditions')
    .select(['device_id', 'kind', 'condition_key'])
    .where('kind', 'in', [...CONDITION_KINDS])
    .execute();
  for (const c of conditions) {
    const device = facts.get(c.device_id);
    if (device) device.conditions.set(c.kind, [...(device.conditions.get(c.kind) ?? []), c.condition_key]);
  }
  // The received time bounds the scan (it is indexed); the device's own time decides the window.
  const windowMs = Math.max(config.crashLoop.windowMinutes, config.credentialRejected.windowMinutes) * 60_000;
  const events = await hub.db
    .selectFrom('events')
    .select(['device_id', 'kind', 'occurred_at_ms', 'message'])
    .where('received_at_ms', '>=', nowMs - windowMs)
    .where('occurred_at_ms', '>=', nowMs - windowMs)
    .where('kind', 'in', [...EVENT_KINDS_READ])
    .execute();
  for (const e of events) {
    const device = facts.get(e.device_id);
    const known = device?.newestEvents.get(e.kind);
    if (device && (!known || known.occurredAtMs < e.occurred_at_ms)) {
      device.newestEvents.set(e.kind, { occurredAtMs: e.occurred_at_ms, message: e.message });
    }
  }
  return [...facts.values()];
}
