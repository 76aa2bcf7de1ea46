import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { fsyncDir, fsyncFile, renameDurable } from '../lib/files.js';
import { DATABASE_FILE } from './db.js';

/**
 * The state database's safety copy for a self-update. A new fleetlet on trial migrates the database at its start;
 * if the trial fails, the binary that comes back must find a database it can open, or it would refuse it
 * (DatabaseTooNewError) and crash-loop with nothing reported. So before the swap the running (proven) binary takes
 * a consistent snapshot, and after a revert it restores that snapshot before it opens the database.
 *
 * Restoring takes the schema from the snapshot and, table by table, the rows from the database the trial left
 * behind, wherever that table still has every column the old schema knows: the replay journal, the unsent reports
 * and the boot sequence written during the trial survive the revert. A table the new version changed beyond that
 * keeps the snapshot's rows. This is done by the old binary rather than the shell guard because it needs SQLite
 * and the knowledge of its own schema, both of which only that binary has.
 */
export const SNAPSHOT_FILE = 'fleetlet.db.pre-upgrade';
/** The database a failed trial left behind, kept (one copy, replaced at the next snapshot) for a post-mortem. */
export const REVERTED_FILE = 'fleetlet.db.reverted';

const SQLITE_SIDE_FILES = ['-wal', '-shm', '-journal'];

export function snapshotPath(stateDir: string): string {
  return join(stateDir, SNAPSHOT_FILE);
}

/** Takes the snapshot of the open database durably: VACUUM INTO a temp file, fsync, rename, fsync the directory. */
export async function snapshotDatabase(db: Database, stateDir: string): Promise<string> {
  const target = snapshotPath(stateDir);
  const temp = `${target}.tmp`;
  removeDatabaseFiles(temp);
  removeDatabaseFiles(join(stateDir, REVERTED_FILE));
  // VACUUM INTO reads one consistent view of the database (WAL included) and writes a compact copy of it.
  db.prepare('VACUUM INTO ?').run(temp);
  await fsyncFile(temp);
  await renameDurable(temp, target);
  return target;
}

/** Forgets the snapshot once the new binary is confirmed: from then on its database is the one that counts. */
export async function dropSnapshot(stateDir: string): Promise<void> {
  const files = [snapshotPath(stateDir), join(stateDir, REVERTED_FILE)];
  if (!files.some((file) => existsSync(file))) return;
  for (const file of files) removeDatabaseFiles(file);
  await fsyncDir(stateDir);
}

export interface RestoreReport {
  /** Tables whose rows came from the database the trial left behind. */
  salvaged: string[];
  /** Tables that kept the snapshot's rows (the newer database lacked them or their columns changed). */
  fromSnapshot: string[];
}

/**
 * Puts the snapshot back as the state database, with the rows salvaged from the trial's database. Undefined when
 * there is no snapshot (nothing to do, or done already). Every step can be cut by a power cut and run again: the
 * trial's database is moved aside once (to `fleetlet.db.reverted`, with its WAL), the merge is built in a temp file,
 * and the snapshot is removed only after the merged file has taken the database's name.
 */
export async function restoreSnapshot(stateDir: string, nativeBinding?: unknown): Promise<RestoreReport | undefined> {
  const snapshot = snapshotPath(stateDir);
  if (!existsSync(snapshot)) return undefined;
  const file = join(stateDir, DATABASE_FILE);
  const reverted = join(stateDir, REVERTED_FILE);
  if (!existsSync(reverted)) {
    // The WAL and shared-memory files move first and under the same new name, so that the moved database keeps them.
    for (const suffix of [...SQLITE_SIDE_FILES, '']) {
      if (existsSync(file + suffix)) await rename(file + suffix, reverted + suffix);
    }
    await fsyncDir(stateDir);
  } else {
    // A restore cut short after the merged file took the name: the trial's rows are still in `reverted`.
    removeDatabaseFiles(file);
  }
  const restoring = `${file}.restoring`;
  removeDatabaseFiles(restoring);
  copyFileSync(snapshot, restoring);
  const merged = new BetterSqlite3(restoring, nativeBinding ? { nativeBinding: nativeBinding as string } : {});
  let report: RestoreReport;
  try {
    report = salvageRows(merged, reverted);
  } finally {
    merged.close();
  }
  await fsyncFile(restoring);
  await renameDurable(restoring, file);
  removeDatabaseFiles(snapshot);
  await fsyncDir(stateDir);
  return report;
}

function salvageRows(merged: Database, newerFile: string): RestoreReport {
  const tables = (
    merged
      .prepare(`SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'schema_version' ORDER BY name`)
      .all() as { name: string }[]
  ).map((row) => row.name);
  const report: RestoreReport = { salvaged: [], fromSnapshot: [] };
  if (!existsSync(newerFile)) return { ...report, fromSnapshot: tables };
  try {
    merged.prepare('ATTACH DATABASE ? AS newer').run(newerFile);
    // Reading the newer file also proves it is a database; a corrupt one leaves the snapshot as it is.
    merged.prepare('SELECT count(*) FROM newer.sqlite_schema').get();
  } catch {
    return { ...report, fromSnapshot: tables };
  }
  for (const table of tables) {
    (copyTable(merged, table) ? report.salvaged : report.fromSnapshot).push(table);
  }
  merged.exec('DETACH DATABASE newer');
  return report;
}

/** Replaces the snapshot's rows of `table` with the newer database's, all or nothing. */
function copyTable(merged: Database, table: string): boolean {
  const quoted = `"${table.replace(/"/g, '""')}"`;
  const columns = (merged.pragma(`main.table_info(${quoted})`) as { name: string }[]).map((c) => c.name);
  const newerColumns = new Set((merged.pragma(`newer.table_info(${quoted})`) as { name: string }[]).map((c) => c.name));
  if (columns.length === 0 || !columns.every((c) => newerColumns.has(c))) return false;
  const list = columns.map((c) => `"${c.replace(/"/g, '""')}"`).join(', ');
  try {
    merged.transaction(() => {
      merged.exec(`DELETE FROM main.${quoted}`);
      merged.exec(`INSERT INTO main.${quoted} (${list}) SELECT ${list} FROM newer.${quoted}`);
    })();
    return true;
  } catch {
    // A row the old schema's constraints refuse: the table keeps the snapshot's rows (the transaction rolled back).
    return false;
  }
}

function removeDatabaseFiles(path: string): void {
  for (const suffix of ['', ...SQLITE_SIDE_FILES]) rmSync(path + suffix, { force: true });
}
