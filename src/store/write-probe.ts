import type { Database } from 'better-sqlite3';

const PROBE_KEY = 'health.write-probe';

/** Whether the state database takes a write now (one upserted row): a read-only or full disk answers false. */
export function databaseWritable(db: Database, nowMs = Date.now()): boolean {
  try {
    db.prepare(
      'INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
    ).run(PROBE_KEY, String(nowMs), nowMs);
    return true;
  } catch {
    return false;
  }
}
