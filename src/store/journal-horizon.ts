import type { Database } from 'better-sqlite3';

/**
 * The replay horizon of the command journal: when the state database had to be started afresh, the journal of the
 * commands accepted before may be lost, so a command issued before that moment may have run already. The time is
 * kept in the kv table (one row); the commands feature refuses such commands as replays.
 */
const KEY = 'commands.journal-horizon';

export function recordJournalHorizon(db: Database, atMs: number): void {
  db.prepare(
    'INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
  ).run(KEY, String(atMs), atMs);
}

/** The time of the last recovery in ms since the epoch, or undefined when the journal was never lost. */
export function readJournalHorizon(db: Database): number | undefined {
  const row = db.prepare('SELECT value FROM kv WHERE key = ?').get(KEY) as { value: string } | undefined;
  const value = row ? Number(row.value) : NaN;
  return Number.isFinite(value) ? value : undefined;
}
