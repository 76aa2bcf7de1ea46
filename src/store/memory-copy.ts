import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { DATABASE_FILE, migrate, type OpenDatabaseOptions, type OpenedDatabase } from './db.js';
import { MIGRATIONS } from './migrations.js';

/**
 * The state database read into memory, for an agent whose file system is full: it runs on the copy (journal,
 * node identity, boot sequence and outbox budgets as they were) and writes nothing to the disk. Nothing written to
 * the copy survives a restart; the file itself is left as it was, for the next start with room. An unreadable file
 * gives an empty copy.
 */
export function openInMemoryCopy(options: OpenDatabaseOptions): OpenedDatabase & { copiedFromFile: boolean } {
  const file = join(options.stateDir, DATABASE_FILE);
  const binding = options.nativeBinding ? { nativeBinding: options.nativeBinding as string } : {};
  let image: Buffer | undefined;
  try {
    // A file of 0 bytes is what a failed first start on a full disk leaves: nothing to copy.
    image = existsSync(file) && statSync(file).size > 0 ? readImage(file, binding) : undefined;
  } catch {
    image = undefined;
  }
  const db = new BetterSqlite3(image ?? ':memory:', binding);
  try {
    db.pragma('foreign_keys = ON');
    const migratedFrom = migrate(db, file, options.migrations ?? MIGRATIONS, options.fleetletVersion);
    return { db, file, migratedFrom, copiedFromFile: image !== undefined };
  } catch (err) {
    db.close();
    throw err;
  }
}

function readImage(file: string, binding: { nativeBinding?: string }): Buffer {
  const source: Database = new BetterSqlite3(file, { fileMustExist: true, ...binding });
  try {
    // Exclusive before the first read: WAL then keeps its index in memory and needs no -shm file, which a full file
    // system may not be able to grow.
    source.pragma('locking_mode = EXCLUSIVE');
    const image = source.serialize();
    // Header bytes 18-19 say WAL (2), which an in-memory database cannot use; 1 is the rollback journal.
    image[18] = 1;
    image[19] = 1;
    return image;
  } finally {
    source.close();
  }
}
