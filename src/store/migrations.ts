import type { Database } from 'better-sqlite3';

/**
 * The state database's schema history, oldest first. Version N is reached by applying migrations[0..N-1].
 * Append only: never edit a migration that has shipped, since devices in the field are at every version.
 * Kept in code because the single binary has no migrations folder.
 */
export interface Migration {
  version: number;
  description: string;
  up: (db: Database) => void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'key-value state and the local event log',
    up: (db) => {
      db.exec(`
        CREATE TABLE kv (
          key TEXT PRIMARY KEY,
          value TEXT NOT NULL,
          updated_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE event_log (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          at INTEGER NOT NULL,
          kind TEXT NOT NULL,
          detail TEXT NOT NULL
        ) STRICT;
      `);
    },
  },
  {
    version: 2,
    description: 'the outbox: every report waits here until the broker acknowledged it',
    up: (db) => {
      // seq is the rowid, handed out by the outbox itself (no AUTOINCREMENT: its sqlite_sequence row would cost
      // a page write per commit). No secondary index either: each index is one more page written per record on
      // an SD card, and the scans it would save (oldest or newest of a class) run only when shedding or connecting.
      // body is the JSON published on the wire, messageId included, so a drain parses nothing.
      db.exec(`
        CREATE TABLE outbox (
          seq INTEGER PRIMARY KEY,
          message_id TEXT NOT NULL,
          class TEXT NOT NULL,
          topic TEXT NOT NULL,
          body TEXT NOT NULL,
          qos INTEGER NOT NULL,
          retain INTEGER NOT NULL,
          created_at INTEGER NOT NULL,
          bytes INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE outbox_counters (
          name TEXT PRIMARY KEY,
          value INTEGER NOT NULL
        ) STRICT;
      `);
    },
  },
  {
    version: 3,
    description: 'the command journal: every accepted command, so none runs twice and none is forgotten in a crash',
    up: (db) => {
      // Rows stay until their command has expired (plus the clock-skew allowance): after that the expiry check
      // refuses a replay on its own. `command` holds the verified command while it runs, so a restart can resume
      // it; `step` is the handler's persisted progress (e.g. the upgrade state machine's state).
      db.exec(`
        CREATE TABLE command_journal (
          command_id TEXT PRIMARY KEY,
          type TEXT NOT NULL,
          key_id TEXT NOT NULL,
          received_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL,
          state TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
          command TEXT NOT NULL,
          step TEXT,
          outcome TEXT,
          updated_at INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX command_journal_expires ON command_journal (expires_at);
        CREATE INDEX command_journal_running ON command_journal (state) WHERE state = 'running';
      `);
    },
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.length;
