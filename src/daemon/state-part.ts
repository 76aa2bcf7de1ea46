import type { Config } from '../config/schema.js';
import type { Logger } from '../lib/logger.js';
import type { Database } from '../store/db.js';
import type { DatabaseRecovery } from '../store/recovery.js';
import { EventLog } from '../store/event-log.js';
import { outboxLimitsFromConfig } from '../store/outbox-limits.js';
import { SqliteOutbox } from '../store/sqlite-outbox.js';
import { StatusSpool, statusSpoolDir } from '../store/status-spool.js';
import { openAgentState, type DiskFull } from './agent-state.js';
import type { Part } from './lifecycle.js';

export interface StatePartDeps {
  fleetletVersion: string;
  /** better-sqlite3's native addon as the single binary loads it; undefined beside node_modules. */
  nativeBinding: unknown;
  logger: Logger;
}

export interface AgentStore {
  /** Closes the database: started first, so stopped last, after every part that writes to it. */
  part: Part;
  db: Database;
  /** The local record of notable events (what logs.collect returns as the agent's lines). */
  eventLog: EventLog;
  outbox: SqliteOutbox;
  bootSequence: number;
  /** Set when the agent runs on an in-memory copy because the state file system is full. */
  diskFull?: DiskFull;
  /** Set when the database was unreadable and a fresh one was started. */
  recovered?: DatabaseRecovery;
}

/**
 * The state part, built from the `stateDir` and `limits` config keys: the database (or its in-memory copy when the
 * disk is full), the event log and the outbox every report goes through.
 */
export function buildStatePart(config: Pick<Config, 'stateDir' | 'runtimeDir' | 'limits'>, deps: StatePartDeps): AgentStore {
  const { logger } = deps;
  const { opened, bootSequence, diskFull } = openAgentState({
    stateDir: config.stateDir,
    fleetletVersion: deps.fleetletVersion,
    nativeBinding: deps.nativeBinding,
  });
  if (diskFull) {
    logger.error(diskFull, 'the file system of the state directory is full: running on an in-memory copy of the state until a restart with room; commands are refused meanwhile');
  }
  const eventLog = new EventLog(opened.db, config.limits.eventLog);
  if (opened.recovered) {
    logger.error(opened.recovered, 'state database was unreadable; moved it aside and started a fresh one');
    eventLog.record('state.database-recovered', { ...opened.recovered });
  }
  const spoolDir = diskFull ? undefined : statusSpoolDir(config.runtimeDir, config.stateDir);
  if (!spoolDir) logger.info({ runtimeDir: config.runtimeDir }, 'runtimeDir is not in RAM (tmpfs): every status sample is written to the state database');
  const statusSpool = spoolDir ? new StatusSpool(spoolDir) : undefined;
  const limits = outboxLimitsFromConfig(config.limits);
  const outbox = new SqliteOutbox(opened.db, { limits, logger, conditions: eventLog, ...(statusSpool ? { statusSpool } : {}) });
  const stop = () => {
    outbox.flushStatusSpool();
    opened.db.close();
  };
  return {
    part: { name: 'state-database', start: () => {}, stop },
    db: opened.db,
    eventLog,
    outbox,
    bootSequence,
    ...(diskFull ? { diskFull } : {}),
    ...(opened.recovered ? { recovered: opened.recovered } : {}),
  };
}
