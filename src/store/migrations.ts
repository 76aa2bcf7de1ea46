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
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.length;
