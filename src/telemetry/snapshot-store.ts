import type { Database } from '../store/db.js';
import type { Inventory } from '../protocol/inventory.js';
import type { Status } from '../protocol/status.js';

/**
 * The latest status and inventory, kept in the state database's key-value table so that `fleetlet status` can
 * show the device while the daemon is stopped, from the same file, opened read-only.
 */
export const STATUS_KEY = 'telemetry.latest-status';
export const INVENTORY_KEY = 'telemetry.inventory';

export class SnapshotStore {
  private readonly upsert;

  constructor(db: Database) {
    this.upsert = db.prepare(
      'INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ' +
        'ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
    );
  }

  saveStatus(status: Status, at = Date.now()): void {
    this.put(STATUS_KEY, status, at);
  }

  saveInventory(inventory: Inventory, at = Date.now()): void {
    this.put(INVENTORY_KEY, inventory, at);
  }

  private put(key: string, value: unknown, at: number): void {
    this.upsert.run(key, JSON.stringify(value), at);
  }
}

/** Reads the snapshots back; values that do not parse come back as undefined. */
export function readSnapshot(db: Database, key: string): { value: unknown; updatedAt: number } | undefined {
  const row = db.prepare('SELECT value, updated_at AS updatedAt FROM kv WHERE key = ?').get(key) as
    | { value: string; updatedAt: number }
    | undefined;
  if (!row) return undefined;
  try {
    return { value: JSON.parse(row.value) as unknown, updatedAt: row.updatedAt };
  } catch {
    return undefined;
  }
}
