import type { Database } from 'better-sqlite3';

/** A local record of notable things that happened to the agent (database recovered, clone detected, ...). */
export interface LoggedEvent {
  id: number;
  at: number;
  kind: string;
  detail: Record<string, unknown>;
}

/** Rows and bytes (kind and detail) the event log may hold; the oldest entries go first (limits.eventLog). */
export interface EventLogLimits {
  maxRows: number;
  maxBytes: number;
}

/** Trimming goes down to this share of the limits, so that it runs once per many records, not on every one. */
const TRIM_TO = 0.9;
const ROW_BYTES = 'length(CAST(kind AS BLOB)) + length(CAST(detail AS BLOB))';

/**
 * The event log in the state database (table `event_log`). A crash-looping k3s records an event with its last log
 * lines every few seconds, for as long as nobody looks: the log is bounded by rows and bytes like the outbox. The
 * totals are counted in memory and recounted only when a limit is passed.
 */
export class EventLog {
  private rows = 0;
  private bytes = 0;

  constructor(
    private readonly db: Database,
    private readonly limits: EventLogLimits,
  ) {
    ({ rows: this.rows, bytes: this.bytes } = totalsOf(db));
    if (this.overLimits()) this.trim();
  }

  record(kind: string, detail: Record<string, unknown>, at = Date.now()): void {
    const json = JSON.stringify(detail);
    this.db.prepare('INSERT INTO event_log (at, kind, detail) VALUES (?, ?, ?)').run(at, kind, json);
    this.rows += 1;
    this.bytes += Buffer.byteLength(kind) + Buffer.byteLength(json);
    if (this.overLimits()) this.trim();
  }

  recent(limit = 50): LoggedEvent[] {
    const rows = this.db
      .prepare('SELECT id, at, kind, detail FROM event_log ORDER BY id DESC LIMIT ?')
      .all(limit) as { id: number; at: number; kind: string; detail: string }[];
    return rows.map((row) => ({ ...row, detail: JSON.parse(row.detail) as Record<string, unknown> }));
  }

  private overLimits(): boolean {
    return this.rows > this.limits.maxRows || this.bytes > this.limits.maxBytes;
  }

  /** Deletes the oldest entries until both totals are under TRIM_TO of their limits; the newest entry always stays. */
  private trim(): void {
    const keepRows = Math.max(1, Math.floor(this.limits.maxRows * TRIM_TO));
    const keepBytes = Math.floor(this.limits.maxBytes * TRIM_TO);
    try {
      // The newest entries are summed from the top down; the first one that no longer fits marks the cut.
      const cut = this.db
        .prepare(
          `SELECT id FROM (
             SELECT id, ROW_NUMBER() OVER (ORDER BY id DESC) AS newer_rows, SUM(${ROW_BYTES}) OVER (ORDER BY id DESC) AS newer_bytes
               FROM event_log)
           WHERE newer_rows > 1 AND (newer_rows > ? OR newer_bytes > ?) ORDER BY id DESC LIMIT 1`,
        )
        .pluck()
        .get(keepRows, keepBytes) as number | undefined;
      if (cut !== undefined) this.db.prepare('DELETE FROM event_log WHERE id <= ?').run(cut);
      ({ rows: this.rows, bytes: this.bytes } = totalsOf(this.db));
    } catch {
      // A full disk can refuse the delete too: the totals stay over the limit, and the next record tries again.
    }
  }
}

function totalsOf(db: Database): { rows: number; bytes: number } {
  return db.prepare(`SELECT COUNT(*) AS rows, COALESCE(SUM(${ROW_BYTES}), 0) AS bytes FROM event_log`).get() as { rows: number; bytes: number };
}
