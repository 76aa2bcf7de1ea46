import type { Database } from '../store/db.js';

const KEY = 'link.bootSequence';

/**
 * Increments and returns the agent's boot sequence, kept in the state database. Presence messages carry it so
 * that the fleet can tell a late last will from an earlier run apart from the current session's presence.
 */
export function nextBootSequence(db: Database, now: () => number = Date.now): number {
  return db.transaction(() => {
    const row = db.prepare('SELECT value FROM kv WHERE key = ?').get(KEY) as { value: string } | undefined;
    const previous = row ? Number.parseInt(row.value, 10) : 0;
    const next = Number.isSafeInteger(previous) && previous > 0 ? previous + 1 : 1;
    db.prepare(
      'INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
    ).run(KEY, String(next), now());
    return next;
  })();
}
