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
      db.exec(`
        CREATE TABLE outbox (
          seq INTEGER PRIMARY KEY AUTOINCREMENT,
          message_id TEXT NOT NULL UNIQUE,
          class TEXT NOT NULL,
          topic TEXT NOT NULL,
          payload TEXT NOT NULL,
          qos INTEGER NOT NULL,
          retain INTEGER NOT NULL,
          created_at INTEGER NOT NULL,
          bytes INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX outbox_class_seq ON outbox (class, seq);
      `);
    },
  },
  {
    version: 3,
    description: 'the command journal: every command seen, so none runs twice',
    up: (db) => {
      db.exec(`
        CREATE TABLE command_journal (
          command_id TEXT PRIMARY KEY,
          type TEXT NOT NULL,
          received_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL,
          state TEXT NOT NULL,
          detail TEXT NOT NULL
        ) STRICT;
      `);
    },
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.length;
