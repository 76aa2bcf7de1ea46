import type { Database } from 'better-sqlite3';
import { OUTBOX_CLASSES, zeroCounts, type OutboxClass, type OutgoingRecord, type QueuedRecord } from './outbox.js';
import type { BudgetLedger } from './outbox-budget.js';
import { markHistorical } from './outbox-records.js';
import { isErrno } from '../lib/errors.js';

/** The SQL of SqliteOutbox (table `outbox`, migration 2), prepared once per connection. */

/** The name of the acknowledged mark in `outbox_counters` (see outbox-ack-mark.ts). */
export const ACKED_THROUGH = 'ackedThrough';

const SELECT_COLUMNS = 'seq, message_id, class, topic, body, qos, retain, created_at';

/** A row of SELECT_COLUMNS, in that order. */
export type Row = [seq: number, messageId: string, cls: OutboxClass, topic: string, body: string, qos: 0 | 1, retain: number, createdAt: number];

/**
 * What the drain publishes: only the columns it sends, as arrays. The body stays TEXT: a BLOB would come back as a
 * Buffer, which measured slower to make than the string (docs/benchmarks.md, "Drain of a 100,000-record backlog").
 */
const OUTGOING_SQL = 'SELECT seq, topic, body, qos, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?';

/** A row of OUTGOING_SQL, in that order. */
export type OutgoingRow = [seq: number, topic: string, body: string, qos: 0 | 1, retain: number];

export function prepareOutboxStatements(db: Database) {
  return {
    insert: db.prepare(
      'INSERT INTO outbox (seq, message_id, class, topic, body, qos, retain, created_at, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    // Every statement that reads queued rows skips those at or below the acknowledged mark (outbox-ack-mark.ts).
    evictOldest: db.prepare(
      'DELETE FROM outbox WHERE seq = (SELECT seq FROM outbox WHERE class = ? AND seq > ? ORDER BY seq LIMIT 1) RETURNING bytes',
    ),
    shedOldest: db.prepare(
      'DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE class = ? AND seq > ? ORDER BY seq LIMIT ?) RETURNING bytes',
    ),
    totalsBetween: db.prepare('SELECT class, COUNT(*) AS n, SUM(bytes) AS b FROM outbox WHERE seq BETWEEN ? AND ? GROUP BY class'),
    deleteBetween: db.prepare('DELETE FROM outbox WHERE seq BETWEEN ? AND ?'),
    deleteThrough: db.prepare('DELETE FROM outbox WHERE seq <= ?'),
    // No WHERE: SQLite frees the whole table in one step instead of row by row.
    deleteAll: db.prepare('DELETE FROM outbox'),
    firstAbove: db.prepare('SELECT seq FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1').pluck(),
    // Rows as arrays: the drain reads every record once, and skipping the intermediate objects is measurably faster.
    pending: db.prepare(`SELECT ${SELECT_COLUMNS} FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?`).raw(true),
    latest: db.prepare(`SELECT ${SELECT_COLUMNS} FROM outbox WHERE class = ? AND seq > ? ORDER BY seq DESC LIMIT 1`).raw(true),
    outgoing: db.prepare(OUTGOING_SQL).raw(true),
    saveCounter: db.prepare(
      'INSERT INTO outbox_counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    ),
  };
}

export type OutboxStatements = ReturnType<typeof prepareOutboxStatements>;

export function toQueued([seq, messageId, cls, topic, body, qos, retain, createdAt]: Row): QueuedRecord {
  return { seq, messageId, class: cls, topic, body, qos, retain: retain === 1, createdAt };
}

export function toOutgoing([seq, topic, body, qos, retain]: OutgoingRow, historicalUpTo: number): OutgoingRecord {
  return { seq, topic, payload: seq <= historicalUpTo ? markHistorical(body) : body, qos, retain: retain === 1 };
}

/** Sorted runs of consecutive numbers: [3, 1, 2, 7] gives [1, 3] and [7, 7]. */
export function consecutiveRuns(values: readonly number[]): [number, number][] {
  const sorted = [...values].sort((a, b) => a - b);
  const runs: [number, number][] = [];
  for (const value of sorted) {
    const last = runs.at(-1);
    if (last && value <= last[1] + 1) last[1] = Math.max(last[1], value);
    else runs.push([value, value]);
  }
  return runs;
}

export function isDiskFull(err: unknown): boolean {
  return isErrno(err, 'SQLITE_FULL');
}

/**
 * Fills the ledger's totals and counters from the tables (rows at or below the acknowledged mark are not queued);
 * returns the mark and the highest seq handed out (the mark's seq when no row is above it; 0 when none ever was).
 */
export function loadLedger(db: Database, ledger: BudgetLedger): { ackedThrough: number; lastSeq: number } {
  ledger.rows = zeroCounts();
  ledger.bytes = zeroCounts();
  const mark = db.prepare('SELECT value FROM outbox_counters WHERE name = ?').pluck().get(ACKED_THROUGH) as number | undefined;
  const ackedThrough = mark ?? 0;
  const totals = db.prepare('SELECT class, COUNT(*) AS n, SUM(bytes) AS b FROM outbox WHERE seq > ? GROUP BY class').all(ackedThrough) as {
    class: OutboxClass;
    n: number;
    b: number;
  }[];
  for (const row of totals) {
    if (!OUTBOX_CLASSES.includes(row.class)) continue;
    ledger.rows[row.class] = row.n;
    ledger.bytes[row.class] = row.b;
  }
  const counters = db.prepare('SELECT name, value FROM outbox_counters').all() as { name: string; value: number }[];
  for (const { name, value } of counters) {
    if (name === 'diskFull') ledger.diskFull = value;
    const cls = OUTBOX_CLASSES.find((c) => name === `dropped.${c}`);
    if (cls) ledger.dropped[cls] = value;
  }
  const max = db.prepare('SELECT MAX(seq) AS seq FROM outbox').get() as { seq: number | null };
  return { ackedThrough, lastSeq: Math.max(max.seq ?? 0, ackedThrough) };
}
