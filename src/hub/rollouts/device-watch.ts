import type { HubDatabase } from '../db/open.js';
import type { RolloutDeviceRow } from '../db/tables.js';
import { chunks } from './chunks.js';

/**
 * What the ingest stored that decides a rollout device's outcome: its final result, its presence, and the signs of a
 * health regression after it succeeded. Reads only; the engine writes the outcomes.
 */
export interface FinalResult {
  status: 'succeeded' | 'failed' | 'rejected';
  detail: string | null;
}

/**
 * The final result of each device's command, by command id, from that device only. A command published again after
 * a hub restart is answered `rejected: replayed` by a device that got it before: that is no answer about the
 * command, whose own final result comes (or came) separately; without one the device times out.
 */
export async function finalResults(hub: HubDatabase, devices: readonly RolloutDeviceRow[]): Promise<Map<string, FinalResult>> {
  const found = new Map<string, FinalResult>();
  const owner = new Map(devices.map((d) => [d.command_id, d.device_id]));
  for (const chunk of chunks(devices.map((d) => d.command_id))) {
    const rows = await hub.db
      .selectFrom('command_results')
      .select(['id', 'device_id', 'command_id', 'status', 'reason', 'payload_json'])
      .where('command_id', 'in', chunk)
      .where('status', 'in', ['succeeded', 'failed', 'rejected'])
      .orderBy('id')
      .execute();
    for (const row of rows) {
      if (row.command_id === null || owner.get(row.command_id) !== row.device_id) continue;
      if ((row.status === 'rejected' && row.reason === 'replayed') || found.has(row.command_id)) continue;
      found.set(row.command_id, { status: row.status as FinalResult['status'], detail: describe(row.reason, row.payload_json) });
    }
  }
  return found;
}

function describe(reason: string | null, payload: string): string | null {
  let detail: unknown;
  try {
    detail = (JSON.parse(payload) as { detail?: unknown }).detail;
  } catch {
    detail = undefined;
  }
  const text = [reason, typeof detail === 'string' ? detail : undefined].filter(Boolean).join(': ');
  return text.length > 0 ? text.slice(0, 500) : null;
}

/** 'online' | 'offline' | null (never heard from) by device id. */
export async function presenceOf(hub: HubDatabase, deviceIds: readonly string[]): Promise<Map<string, string | null>> {
  const presence = new Map<string, string | null>();
  for (const chunk of chunks(deviceIds)) {
    const rows = await hub.db.selectFrom('devices').select(['device_id', 'presence_state']).where('device_id', 'in', chunk).execute();
    for (const row of rows) presence.set(row.device_id, row.presence_state);
  }
  return presence;
}

/**
 * Why each watched device regressed since it succeeded (finished_at_ms, the hub's clock, like the receipt times it
 * is compared with): it went offline, reported a k3s crash loop, or sent a live status with k3s unhealthy.
 */
export async function regressions(hub: HubDatabase, watching: readonly RolloutDeviceRow[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const since = new Map(watching.map((d) => [d.device_id, d.finished_at_ms ?? 0]));
  for (const chunk of chunks(watching.map((d) => d.device_id))) {
    const offline = await hub.db.selectFrom('devices').select('device_id').where('device_id', 'in', chunk).where('presence_state', '=', 'offline').execute();
    for (const row of offline) found.set(row.device_id, 'went offline within the watch window');
    const crashLoops = await hub.db
      .selectFrom('events')
      .select(['device_id', 'received_at_ms'])
      .where('device_id', 'in', chunk)
      .where('kind', '=', 'k3s.crash-loop')
      .where('state', '!=', 'cleared')
      .where('received_at_ms', '>=', Math.min(...chunk.map((id) => since.get(id)!)))
      .execute();
    for (const row of crashLoops) {
      if (row.received_at_ms >= since.get(row.device_id)! && !found.has(row.device_id)) found.set(row.device_id, 'k3s crash-looped within the watch window');
    }
    const unhealthy = await hub.db
      .selectFrom('status_samples')
      .select(['device_id', 'received_at_ms'])
      .where('device_id', 'in', chunk)
      .where('k3s_healthy', '=', 0)
      .where('historical', '=', 0)
      .where('received_at_ms', '>=', Math.min(...chunk.map((id) => since.get(id)!)))
      .execute();
    for (const row of unhealthy) {
      if (row.received_at_ms >= since.get(row.device_id)! && !found.has(row.device_id)) found.set(row.device_id, 'reported k3s unhealthy within the watch window');
    }
  }
  return found;
}
