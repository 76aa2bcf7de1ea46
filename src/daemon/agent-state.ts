import { statfsSync } from 'node:fs';
import { nextBootSequence } from '../link/boot-sequence.js';
import { EVENT_KINDS, type EventInput, type EventKind } from '../protocol/event.js';
import { openDatabase, type OpenDatabaseOptions, type OpenedDatabase } from '../store/db.js';
import { openInMemoryCopy } from '../store/memory-copy.js';
import { errorMessage, isErrno } from '../lib/errors.js';

/** Set when the state directory's file system had no room: the agent runs on an in-memory copy of its state. */
export interface DiskFull {
  reason: string;
  freeBytes: number | undefined;
  /** False when the file could not be read either and the copy started empty. */
  copiedFromFile: boolean;
}

export interface AgentState {
  opened: OpenedDatabase;
  bootSequence: number;
  diskFull?: DiskFull;
}

/** The kinds about the state database: main reports a recovery, diskFullEvent a full file system. */
export const STATE_EVENT_KINDS = ['state.database-recovered', 'state.disk-full'] as const satisfies readonly EventKind[];

/** Less than this free beside the database turns an I/O error into "the disk is full" (SQLite's -shm needs 32 KiB). */
const NEARLY_FULL_BYTES = 1024 * 1024;

/**
 * Opens the state database and takes the boot sequence, the first write of every start. When the file system is
 * full (SQLite cannot grow its -shm or WAL file, or the write fails with SQLITE_FULL) the agent must still start,
 * or it would crash-loop with nothing reported: it then runs on an in-memory copy, and the caller reports it.
 */
export function openAgentState(options: OpenDatabaseOptions): AgentState {
  let opened: OpenedDatabase | undefined;
  try {
    opened = openDatabase(options);
    return { opened, bootSequence: nextBootSequence(opened.db) };
  } catch (err) {
    opened?.db.close();
    const freeBytes = freeBytesOf(options.stateDir);
    if (!isOutOfSpace(err, freeBytes)) throw err;
    const copy = openInMemoryCopy(options);
    // Commands interrupted by the last stop stay running in the file, for the next start with room: resuming them on
    // a copy that is thrown away would run their steps twice.
    copy.db.prepare("DELETE FROM command_journal WHERE state = 'running'").run();
    const reason = errorMessage(err);
    return { opened: copy, bootSequence: nextBootSequence(copy.db), diskFull: { reason, freeBytes, copiedFromFile: copy.copiedFromFile } };
  }
}

function isOutOfSpace(err: unknown, freeBytes: number | undefined): boolean {
  const code = isErrno(err) ? err.code : err instanceof Error && isErrno(err.cause) ? err.cause.code : '';
  if (code === 'SQLITE_FULL' || code === 'ENOSPC') return true;
  return code.startsWith('SQLITE_IOERR') && freeBytes !== undefined && freeBytes < NEARLY_FULL_BYTES;
}

/** What this process may still write: root may use the blocks reserved for it. */
function freeBytesOf(dir: string): number | undefined {
  try {
    const fs = statfsSync(dir);
    return (process.getuid?.() === 0 ? fs.bfree : fs.bavail) * fs.bsize;
  } catch {
    return undefined;
  }
}

/** The event that tells the fleet; raised, because it lasts until a restart with room. */
export function diskFullEvent(stateDir: string, diskFull: DiskFull): EventInput {
  return {
    kind: 'state.disk-full',
    state: 'raised',
    severity: EVENT_KINDS['state.disk-full'].severity,
    message: `the file system of ${stateDir} is full: fleetlet runs on an in-memory copy of its state and refuses commands`,
    remedy: EVENT_KINDS['state.disk-full'].remedy,
    detail: {
      ...(diskFull.freeBytes !== undefined ? { freeBytes: diskFull.freeBytes } : {}),
      copiedFromFile: diskFull.copiedFromFile,
      reason: diskFull.reason.slice(0, 256),
    },
  };
}
