import type { Database } from 'better-sqlite3';

/**
 * The replay horizon of the command journal: the journal may no longer hold every command accepted before this time
 * (the state database had to be started afresh, or the journal was full and its oldest entries went), so a command
 * issued before it may have run already. The time is kept in the kv table (one row); the commands feature refuses
 * such commands as replays.
 */
const KEY = 'commands.journal-horizon';

/** Moves the horizon up to `atMs`; never down, so that no command once refused becomes acceptable again. */
export function raiseJournalHorizon(db: Database, atMs: number): void {
  db.prepare(
    `INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?)
       ON CONFLICT(key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)), updated_at = excluded.updated_at`,
  ).run(KEY, String(atMs), atMs);
}

/** The horizon in ms since the epoch, or undefined when the journal never lost an entry of a valid command. */
export function readJournalHorizon(db: Database): number | undefined {
  const row = db.prepare('SELECT value FROM kv WHERE key = ?').get(KEY) as { value: string } | undefined;
  const value = row ? Number(row.value) : NaN;
  return Number.isFinite(value) ? value : undefined;
}
