import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { StateDirLockedError } from '../lib/errors.js';
import { ensureStateDir } from './db.js';

export const LOCK_FILE = 'agent.lock';
/** Who holds the lock, for the message a second agent prints; only informative, the lock is the kernel's. */
const HOLDER_FILE = 'agent.lock.pid';

export interface StateLock {
  release(): void;
}

export interface StateLockOptions {
  /** Native addon loaded by the single binary (better-sqlite3's nativeBinding option). */
  nativeBinding?: unknown;
  pid?: number;
}

/**
 * One agent per state directory. Two would share the MQTT client id, kick each other off the broker in turn and
 * write the same outbox and journal. The lock is SQLite's exclusive lock on a file of its own (an fcntl lock):
 * the kernel drops it when the holder exits, however it exits, so a crash or SIGKILL never leaves a stale lock.
 * Throws StateDirLockedError while another process holds it. Any other failure to take it (a full disk) is
 * returned as `unavailable`: the agent must still start then, as it does on a full disk.
 */
export function lockStateDir(stateDir: string, options: StateLockOptions = {}): StateLock & { unavailable?: string } {
  ensureStateDir(stateDir);
  const file = join(stateDir, LOCK_FILE);
  let db: Database | undefined;
  try {
    db = new BetterSqlite3(file, { timeout: 0, ...(options.nativeBinding ? { nativeBinding: options.nativeBinding as string } : {}) });
    chmodSync(file, 0o600);
    db.pragma('locking_mode = EXCLUSIVE');
    // In exclusive locking mode the lock a transaction takes is kept after it ends, until the connection closes.
    db.exec('BEGIN EXCLUSIVE; COMMIT;');
  } catch (err) {
    db?.close();
    if ((err as { code?: unknown }).code === 'SQLITE_BUSY') throw new StateDirLockedError(stateDir, holderOf(stateDir));
    return { release: () => {}, unavailable: (err as { code?: string }).code ?? String(err) };
  }
  try {
    writeFileSync(join(stateDir, HOLDER_FILE), `${options.pid ?? process.pid}\n`, { mode: 0o600 });
  } catch {
    // Only the message of a second agent would lack the pid.
  }
  const held = db;
  return { release: () => held.close() };
}

function holderOf(stateDir: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(join(stateDir, HOLDER_FILE), 'utf8'), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
