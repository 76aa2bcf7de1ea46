import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { raiseJournalHorizon } from './journal-horizon.js';

/** What openDatabase did when the state database was unreadable; reported as the `state.database-recovered` event. */
export interface DatabaseRecovery {
  reason: string;
  movedTo: string;
  /** Command journal rows read back from the unreadable file into the fresh one. */
  journalRowsSalvaged: number;
  /** Older moved-aside copies deleted, so that a device that keeps corrupting its card does not fill it. */
  copiesRemoved: number;
}

/** The copy just moved aside and the one before it: enough to investigate, bounded on a small card. */
export const MOVED_ASIDE_COPIES_KEPT = 2;
const SIDE_FILES = ['', '-wal', '-shm'] as const;
const JOURNAL_TABLE = 'command_journal';

/** Renames the database and its WAL and shared-memory files, so that the WAL stays with the file it belongs to. */
export function moveAside(file: string, movedTo: string): void {
  for (const suffix of SIDE_FILES) {
    if (existsSync(file + suffix)) renameSync(file + suffix, movedTo + suffix);
  }
}

/**
 * After a corrupt file was moved aside and a fresh database created: salvages what can be read of the command
 * journal, sets the journal horizon (commands issued before now may have run, whether or not their row could be
 * read), and deletes all but the newest moved-aside copies.
 */
export function completeRecovery(
  db: Database,
  options: { file: string; movedTo: string; reason: string; atMs: number; nativeBinding?: unknown },
): DatabaseRecovery {
  // The clock may have been set back since the last write (a board without a real-time clock boots with a stale
  // time): the file's own last write then says better until when commands were accepted. Read before the salvage
  // opens the file (which may create its -shm).
  const horizon = Math.max(options.atMs, lastWriteMs(options.movedTo));
  const journalRowsSalvaged = salvageJournal(options.movedTo, db, options.nativeBinding);
  if (hasTable(db, 'kv')) {
    raiseJournalHorizon(db, horizon);
    // The horizon is what keeps a replay out now; a power cut must not take it back (synchronous is NORMAL).
    db.pragma('wal_checkpoint(FULL)');
  }
  const copiesRemoved = pruneMovedAsideCopies(options.file, MOVED_ASIDE_COPIES_KEPT);
  return { reason: options.reason, movedTo: options.movedTo, journalRowsSalvaged, copiesRemoved };
}

/**
 * Copies the journal rows that can still be read from `from` (opened read-only, never changed) into `db`. Running
 * commands come back as running, so that the router resumes them or reports them failed, as after any crash.
 */
export function salvageJournal(from: string, db: Database, nativeBinding?: unknown): number {
  if (!hasTable(db, JOURNAL_TABLE)) return 0;
  const columns = (db.prepare(`SELECT name FROM pragma_table_info('${JOURNAL_TABLE}')`).pluck().all() as string[]).join(', ');
  let rows: unknown[][] = [];
  let source: Database | undefined;
  try {
    source = new BetterSqlite3(from, { readonly: true, fileMustExist: true, ...(nativeBinding ? { nativeBinding: nativeBinding as string } : {}) });
    rows = readableRows(source, columns);
  } catch {
    // Not a database at all: nothing to read.
  } finally {
    source?.close();
  }
  const placeholders = columns.split(', ').map(() => '?').join(', ');
  const insert = db.prepare(`INSERT OR IGNORE INTO ${JOURNAL_TABLE} (${columns}) VALUES (${placeholders})`);
  let salvaged = 0;
  db.transaction(() => {
    for (const row of rows) {
      try {
        salvaged += insert.run(...row).changes;
      } catch {
        // A row whose values a damaged page garbled breaks a constraint: skip it, keep the others.
      }
    }
  })();
  return salvaged;
}

/**
 * The journal rows of a damaged file that can still be read. A table scan stops at the first damaged page; the rows
 * after it are then looked up one by one through the primary-key index, whose pages lie elsewhere, so that one bad
 * page costs only its own rows. `columns` starts with command_id.
 */
function readableRows(source: Database, columns: string): unknown[][] {
  const rows = new Map<unknown, unknown[]>();
  try {
    for (const row of source.prepare(`SELECT ${columns} FROM ${JOURNAL_TABLE}`).raw().iterate()) rows.set((row as unknown[])[0], row as unknown[]);
    return [...rows.values()];
  } catch {
    // A damaged page: go on through the index.
  }
  const ids: unknown[] = [];
  try {
    for (const id of source.prepare(`SELECT command_id FROM ${JOURNAL_TABLE} ORDER BY command_id`).pluck().iterate()) ids.push(id);
  } catch {
    // The index is damaged too from here on: the ids read so far are what there is.
  }
  const byId = source.prepare(`SELECT ${columns} FROM ${JOURNAL_TABLE} WHERE command_id = ?`).raw();
  for (const id of ids) {
    if (rows.has(id)) continue;
    try {
      const row = byId.get(id) as unknown[] | undefined;
      if (row) rows.set(id, row);
    } catch {
      // This row lies on a damaged page.
    }
  }
  return [...rows.values()];
}

/** Keeps the newest `keep` moved-aside copies of `file` (the names sort by time) with their side files. */
export function pruneMovedAsideCopies(file: string, keep: number): number {
  const prefix = `${basename(file)}.corrupt-`;
  const copies = readdirSync(dirname(file))
    .filter((name) => name.startsWith(prefix) && !SIDE_FILES.some((suffix) => suffix !== '' && name.endsWith(suffix)))
    .sort();
  const old = copies.slice(0, Math.max(0, copies.length - keep));
  for (const name of old) {
    for (const suffix of SIDE_FILES) rmSync(join(dirname(file), name + suffix), { force: true });
  }
  return old.length;
}

/** When the database or its WAL was last written, by the clock of that time (ms, 0 when neither exists). */
function lastWriteMs(file: string): number {
  const times = ['', '-wal'].map((suffix) => statSync(file + suffix, { throwIfNoEntry: false })?.mtimeMs ?? 0);
  return Math.floor(Math.max(...times));
}

function hasTable(db: Database, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
}
