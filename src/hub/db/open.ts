import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { HubDatabaseTooNewError, HubDatabaseUnavailableError } from '../errors.js';
import { hubMigrations, type HubDialect } from './migrations.js';
import type { HubTables } from './tables.js';

export type { HubDialect };

/**
 * The hub's database, opened and migrated: the one handle the ingest, the retention job, `hub status` and the HTTP
 * API use. `db` is a kysely instance over the tables in tables.ts; write portable queries (kysely's builder,
 * `onConflict` for upserts); where the dialects differ, branch on `dialect`.
 */
export interface HubDatabase {
  readonly db: Kysely<HubTables>;
  readonly dialect: HubDialect;
  /** Where the data lives, without secrets: the SQLite file or the PostgreSQL host/database. */
  readonly location: string;
  /** Bytes the database occupies (SQLite: the file and its WAL; PostgreSQL: pg_database_size). */
  sizeBytes(): Promise<number>;
  close(): Promise<void>;
}

export interface OpenHubDatabaseOptions {
  /** postgres://... ; when unset, SQLite at `file`. */
  url?: string;
  /** The PostgreSQL password, read from hub.database.passwordFile by the caller; never part of the URL. */
  password?: string;
  file: string;
  maxConnections?: number;
  /** better-sqlite3's nativeBinding, for the single binary. */
  nativeBinding?: unknown;
}

/** Opens the database of `hub.database` and brings its schema to the newest migration. */
export async function openHubDatabase(options: OpenHubDatabaseOptions): Promise<HubDatabase> {
  const opened = options.url ? openPostgres(options.url, options) : openSqlite(options.file, options.nativeBinding);
  try {
    await migrate(opened);
  } catch (err) {
    await opened.close();
    throw err;
  }
  return opened;
}

/** Reads a password file (bounded: a wrong path must not be slurped). */
export function readPasswordFile(file: string): string {
  if (statSync(file).size > 4096) throw new HubDatabaseUnavailableError(`${file} is larger than 4096 bytes`);
  return readFileSync(file, 'utf8').trim();
}

function openSqlite(file: string, nativeBinding: unknown): HubDatabase {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const sqlite = new BetterSqlite3(file, nativeBinding ? { nativeBinding: nativeBinding as string } : {});
  sqlite.pragma('journal_mode = WAL');
  // FULL: a commit is on disk before the broker gets its PUBACK, also across a power cut (group commits pay for it).
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('busy_timeout = 10000');
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<HubTables>({ dialect: new SqliteDialect({ database: sqlite }) });
  return {
    db,
    dialect: 'sqlite',
    location: file,
    sizeBytes: async () => fileSize(file) + fileSize(`${file}-wal`),
    close: () => db.destroy(),
  };
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** pg returns 64-bit integers as strings; every such column here (times, counts, ids) fits a double exactly. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

function openPostgres(url: string, options: OpenHubDatabaseOptions): HubDatabase {
  const pool = new pg.Pool({
    connectionString: url,
    ...(options.password !== undefined ? { password: options.password } : {}),
    max: options.maxConnections ?? 10,
    types: TYPES,
    connectionTimeoutMillis: 10_000,
  });
  // An idle client that loses its server emits 'error' on the pool; without a listener that would end the process.
  pool.on('error', () => {});
  const db = new Kysely<HubTables>({ dialect: new PostgresDialect({ pool }) });
  const parsed = new URL(url);
  return {
    db,
    dialect: 'postgres',
    location: `postgres://${parsed.host}${parsed.pathname}`,
    sizeBytes: async () => {
      const { rows } = await sql<{ size: number }>`SELECT pg_database_size(current_database()) AS size`.execute(db);
      return Number(rows[0]?.size ?? 0);
    },
    close: () => db.destroy(),
  };
}

/** kysely's migration lock holds across processes on PostgreSQL only; on SQLite a replica that lost the race retries. */
const SQLITE_MIGRATION_ATTEMPTS = 5;

async function migrate(opened: HubDatabase): Promise<void> {
  const migrations = hubMigrations(opened.dialect);
  const migrator = new Migrator({ db: opened.db, provider: { getMigrations: async () => migrations } });
  let outcome;
  for (let attempt = 1; ; attempt++) {
    try {
      outcome = await migrator.migrateToLatest();
    } catch (err) {
      throw new HubDatabaseUnavailableError(`cannot open the hub database ${opened.location}: ${describe(err)}`, { cause: err });
    }
    // Another process created the tables between this one's check and its own step (each step is one transaction,
    // rolled back here): the next attempt finds the step applied.
    const raced = opened.dialect === 'sqlite' && outcome.error && /already exists/.test(describe(outcome.error));
    if (!raced || attempt >= SQLITE_MIGRATION_ATTEMPTS) break;
    await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
  }
  if (!outcome.error) return;
  const message = describe(outcome.error);
  if (/previously executed migration .* is missing/i.test(message)) {
    throw new HubDatabaseTooNewError(
      `the hub database ${opened.location} was migrated by a newer fleetlet hub (${message}); run that version`,
      { cause: outcome.error },
    );
  }
  throw new HubDatabaseUnavailableError(`cannot migrate the hub database ${opened.location}: ${message}`, { cause: outcome.error });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
