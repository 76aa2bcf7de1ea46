import type { Inventory } from '../../protocol/inventory.js';
import type { Presence } from '../../protocol/presence.js';
import type { Status } from '../../protocol/status.js';
import type { DeviceRow } from '../db/tables.js';
import type { IngestItem } from './classify.js';

/**
 * How one device's row changes with the reports of a batch, as pure functions (the commit reads and writes the rows).
 * Reports may arrive out of order (several connections, retained copies at subscribe, backlogs), so each part of
 * the row keeps the newest by the device's own clock and sequence, never simply the last one received.
 */
export type DeviceItem = Exclude<IngestItem, { channel: 'rejected' } | { channel: 'ignored' }>;

/**
 * A last will carries the time its connection was opened, a little before that connection's birth: within this
 * slack an `offline` of the same boot sequence ends the `online` it follows, and an `online` must be later than
 * the stored `offline` by as much to replace it.
 */
export const WILL_SLACK_MS = 5_000;

export interface FingerprintSighting {
  fingerprint: string;
  atMs: number;
  /** The inventory switched to it from another fingerprint. */
  switched: boolean;
}

export interface KnownFingerprint {
  fingerprint: string;
  lastSeenMs: number;
}

export interface FoldContext {
  nowMs: number;
  conflictWindowMs: number;
  /** The fingerprints this device id showed before (device_fingerprints). */
  known: readonly KnownFingerprint[];
}

export function emptyDevice(deviceId: string, atMs: number): DeviceRow {
  return {
    device_id: deviceId, first_seen_ms: atMs, last_seen_ms: atMs,
    presence_state: null, presence_boot_sequence: null, presence_at_ms: null, presence_reason: null,
    inventory_json: null, inventory_at_ms: null, name: null, fleetlet_version: null, k3s_version: null,
    labels_json: null, groups_json: null, status_json: null, status_sampled_at_ms: null, k3s_state: null,
    k3s_healthy: null, health: 'ok', fingerprint: null, identity_conflict: 0, identity_conflict_at_ms: null,
  };
}

/** The row after the batch's reports of this device, and the fingerprints its inventories showed. */
export function foldDevice(
  current: DeviceRow | undefined,
  items: readonly DeviceItem[],
  context: FoldContext,
): { row: DeviceRow; sightings: FingerprintSighting[] } {
  const deviceId = items[0]!.deviceId;
  const row = { ...(current ?? emptyDevice(deviceId, seenAt(items[0]!))) };
  const sightings: FingerprintSighting[] = [];
  // Fingerprints shown earlier in this same batch count as known too.
  const known = [...context.known];
  for (const item of items) {
    const at = seenAt(item);
    row.last_seen_ms = Math.max(row.last_seen_ms, at);
    row.first_seen_ms = Math.min(row.first_seen_ms, at);
    if (item.channel === 'presence') applyPresence(row, item.presence);
    else if (item.channel === 'inventory') {
      const sighting = applyInventory(row, item.inventory, { ...context, known });
      if (sighting) {
        sightings.push(sighting);
        known.push({ fingerprint: sighting.fingerprint, lastSeenMs: sighting.atMs });
      }
    } else if (item.channel === 'status') applyStatus(row, item.status);
  }
  return { row, sightings };
}

/**
 * When the device was heard: the receipt time, except for a retained copy the broker replays at subscribe, which
 * was sent earlier: then the message's own time, never later than its receipt.
 */
function seenAt(item: DeviceItem): number {
  if (!item.retained) return item.receivedAtMs;
  const own = item.channel === 'presence' ? Date.parse(item.presence.at) : item.channel === 'inventory' ? Date.parse(item.inventory.collectedAt) : item.receivedAtMs;
  return Math.min(own, item.receivedAtMs);
}

export function presenceIsNewer(row: Pick<DeviceRow, 'presence_boot_sequence' | 'presence_at_ms' | 'presence_state'>, presence: Presence): boolean {
  if (row.presence_boot_sequence === null || row.presence_at_ms === null) return true;
  if (presence.bootSequence !== row.presence_boot_sequence) return presence.bootSequence > row.presence_boot_sequence;
  const at = Date.parse(presence.at);
  if (presence.state === row.presence_state) return at > row.presence_at_ms;
  return presence.state === 'offline' ? at >= row.presence_at_ms - WILL_SLACK_MS : at > row.presence_at_ms + WILL_SLACK_MS;
}

function applyPresence(row: DeviceRow, presence: Presence): void {
  if (!presenceIsNewer(row, presence)) return;
  row.presence_state = presence.state;
  row.presence_boot_sequence = presence.bootSequence;
  row.presence_at_ms = Date.parse(presence.at);
  row.presence_reason = presence.reason ?? null;
}

/** The machine's fingerprint (what identity.reidentify quotes), else all identity fingerprints together. */
export function machineFingerprint(inventory: Inventory): string | null {
  if (inventory.identity.machine) return inventory.identity.machine;
  const entries = Object.entries(inventory.identity).sort(([a], [b]) => a.localeCompare(b));
  return entries.length > 0 ? entries.map(([k, v]) => `${k}=${v}`).join(',') : null;
}

function applyInventory(row: DeviceRow, inventory: Inventory, context: FoldContext): FingerprintSighting | undefined {
  const collectedAt = Date.parse(inventory.collectedAt);
  if (row.inventory_at_ms !== null && collectedAt < row.inventory_at_ms) return undefined;
  row.inventory_json = JSON.stringify(inventory);
  row.inventory_at_ms = collectedAt;
  row.name = inventory.name ?? null;
  row.fleetlet_version = inventory.fleetletVersion;
  row.k3s_version = inventory.k3sVersion ?? null;
  row.labels_json = JSON.stringify(inventory.labels);
  row.groups_json = JSON.stringify(inventory.groups);
  const fingerprint = machineFingerprint(inventory);
  if (fingerprint === null) return undefined;
  const switched = row.fingerprint !== null && row.fingerprint !== fingerprint;
  // A board swap shows a new fingerprint once; a cloned image keeps switching back to one seen shortly before.
  const returning = context.known.find((k) => k.fingerprint === fingerprint && k.lastSeenMs >= context.nowMs - context.conflictWindowMs);
  if (switched && returning && row.identity_conflict === 0) {
    row.identity_conflict = 1;
    row.identity_conflict_at_ms = context.nowMs;
  }
  row.fingerprint = fingerprint;
  return { fingerprint, atMs: context.nowMs, switched };
}

function applyStatus(row: DeviceRow, status: Status): void {
  const sampledAt = Date.parse(status.sampledAt);
  if (row.status_sampled_at_ms !== null && sampledAt <= row.status_sampled_at_ms) return;
  row.status_json = JSON.stringify(status);
  row.status_sampled_at_ms = sampledAt;
  row.k3s_state = status.k3s.state;
  row.k3s_healthy = status.k3s.healthy ? 1 : 0;
}

const SEVERITY_RANK: Record<string, number> = { info: 0, warning: 1, critical: 2 };

/** ok | warning | critical: the worst open condition; an unhealthy k3s is at least a warning. */
export function healthOf(openSeverities: readonly string[], k3sHealthy: number | null): string {
  let worst = k3sHealthy === 0 ? 1 : 0;
  for (const severity of openSeverities) worst = Math.max(worst, SEVERITY_RANK[severity] ?? 0);
  return ['ok', 'warning', 'critical'][worst]!;
}
