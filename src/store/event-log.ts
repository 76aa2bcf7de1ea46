import type { Database } from 'better-sqlite3';

/** A local record of notable things that happened to the agent (database recovered, clone detected, ...). */
export interface LoggedEvent {
  id: number;
  at: number;
  kind: string;
  detail: Record<string, unknown>;
}

export class EventLog {
  constructor(private readonly db: Database) {}

  record(kind: string, detail: Record<string, unknown>, at = Date.now()): void {
    this.db.prepare('INSERT INTO event_log (at, kind, detail) VALUES (?, ?, ?)').run(at, kind, JSON.stringify(detail));
  }

  recent(limit = 50): LoggedEvent[] {
    const rows = this.db
      .prepare('SELECT id, at, kind, detail FROM event_log ORDER BY id DESC LIMIT ?')
      .all(limit) as { id: number; at: number; kind: string; detail: string }[];
    return rows.map((row) => ({ ...row, detail: JSON.parse(row.detail) as Record<string, unknown> }));
  }
}
