import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { DatabaseTooNewError, errorMessage, errorReason, isErrno, StateDirError } from '../lib/errors.js';
import { MIGRATIONS, type Migration } from './migrations.js';
import { completeRecovery, moveAside, type DatabaseRecovery } from './recovery.js';

export type { Database };
export const DATABASE_FILE = 'fleetlet.db';

export interface OpenedDatabase {
  db: Database;
  file: string;
  /** Set when the previous file was unreadable and was moved aside. */
  recovered?: DatabaseRecovery;
  migratedFrom: number;
}

export interface OpenDatabaseOptions {
  stateDir: string;
  fleetletVersion: string;
  migrations?: readonly Migration[];
  /** Injected for tests; recovery file names carry this time. */
  now?: () => Date;
  /** Native addon loaded by the single binary (better-sqlite3's nativeBinding option). */
  nativeBinding?: unknown;
}

/**
 * Opens the state database: WAL, integrity check, migrations. A corrupt or unreadable file must not put the daemon
 * in a crash loop, so it is moved aside with a timestamp and a fresh one is started (the caller records the event);
 * what can be read of its command journal is carried over, and commands issued before then count as replays.
 * A file from a newer fleetlet is refused (DatabaseTooNewError) and left untouched: it may still be needed.
 */
export function openDatabase(options: OpenDatabaseOptions): OpenedDatabase {
  const migrations = options.migrations ?? MIGRATIONS;
  ensureStateDir(options.stateDir);
  const file = join(options.stateDir, DATABASE_FILE);
  try {
    return { file, ...openAndMigrate(file, migrations, options) };
  } catch (err) {
    if (err instanceof DatabaseTooNewError || !isCorruption(err)) throw err;
    const at = options.now?.() ?? new Date();
    const movedTo = `${file}.corrupt-${at.toISOString().replace(/[:.]/g, '-')}`;
    moveAside(file, movedTo);
    const reason = errorMessage(err);
    const opened = openAndMigrate(file, migrations, options);
    const recovered = completeRecovery(opened.db, { file, movedTo, reason, atMs: at.getTime(), nativeBinding: options.nativeBinding });
    return { file, ...opened, recovered };
  }
}

class IntegrityError extends Error {}

function openAndMigrate(file: string, migrations: readonly Migration[], options: OpenDatabaseOptions) {
  const db = new BetterSqlite3(file, options.nativeBinding ? { nativeBinding: options.nativeBinding as string } : {});
  try {
    chmodSync(file, 0o600);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    // 2 MiB of page cache (better-sqlite3 builds SQLite with 16 MiB): a drain reads the outbox once, in order, so a
    // bigger cache only holds pages it will not read again, as RSS (docs/benchmarks.md, "Memory while draining").
    db.pragma('cache_size = -2048');
    // The database stays small (the outbox has budgets), so a full check at open costs little.
    const check = db.pragma('integrity_check', { simple: true });
    if (check !== 'ok') throw new IntegrityError(`integrity check failed: ${String(check)}`);
    const migratedFrom = migrate(db, file, migrations, options.fleetletVersion);
    return { db, migratedFrom };
  } catch (err) {
    db.close();
    throw err;
  }
}

export function migrate(db: Database, file: string, migrations: readonly Migration[], fleetletVersion: string): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL,
    fleetlet_version TEXT NOT NULL
  ) STRICT`);
  const current = (db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null }).v ?? 0;
  const latest = migrations.length;
  if (current > latest) throw new DatabaseTooNewError(file, current, latest);
  const record = db.prepare('INSERT INTO schema_version (version, applied_at, fleetlet_version) VALUES (?, ?, ?)');
  for (const migration of migrations.slice(current)) {
    // Each step is one transaction: a power cut leaves the database at the previous version, never half-way.
    db.transaction(() => {
      migration.up(db);
      record.run(migration.version, Date.now(), fleetletVersion);
    })();
  }
  return current;
}

function isCorruption(err: unknown): boolean {
  if (err instanceof IntegrityError) return true;
  const code = isErrno(err) ? err.code : '';
  return ['SQLITE_CORRUPT', 'SQLITE_NOTADB', 'SQLITE_CANTOPEN_ISDIR'].includes(code) || code.startsWith('SQLITE_CORRUPT');
}

export function ensureStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StateDirError(`cannot create state directory ${dir}: ${errorReason(err)}`, {
      cause: err,
    });
  }
}
