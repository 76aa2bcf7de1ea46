import type { Database } from 'better-sqlite3';
import type { Command } from '../protocol/command.js';
import { raiseJournalHorizon, readJournalHorizon } from '../store/journal-horizon.js';

export type JournalState = 'running' | 'succeeded' | 'failed';

export interface JournalEntry {
  commandId: string;
  type: string;
  state: JournalState;
  receivedAt: number;
  expiresAt: number;
  /** The verified command; its args are dropped once it finished (they may carry a join token). */
  command: Command;
  step: unknown;
  outcome: string | null;
}

interface Row {
  command_id: string;
  type: string;
  state: JournalState;
  received_at: number;
  expires_at: number;
  command: string;
  step: string | null;
  outcome: string | null;
}

/**
 * The command journal in the state database (migration 3). It answers "seen before?" for replay protection, and
 * holds every running command with its last persisted step, so that after a crash or power cut the router can
 * resume it or report it failed: an accepted command always ends in a final result.
 */
/**
 * Entries kept at most. Expiry bounds the journal by time; this bounds it by size, whatever operators send within a
 * command's lifetime (a runaway script, a flood of pings). Far above what a device sees in normal use.
 */
export const MAX_JOURNAL_ENTRIES = 10_000;
/** Capping deletes down to this share, so that it runs once per many commands. */
const CAP_TO = 0.9;

export class CommandJournal {
  constructor(
    private readonly db: Database,
    private readonly maxEntries = MAX_JOURNAL_ENTRIES,
  ) {}

  seenBefore(commandId: string): boolean {
    return this.db.prepare('SELECT 1 FROM command_journal WHERE command_id = ?').get(commandId) !== undefined;
  }

  /** Set when the journal lost entries (a recovered database, a full journal): commands issued before may be missing. */
  replayHorizon(): number | undefined {
    return readJournalHorizon(this.db);
  }

  /** Records an accepted command as running. False when the id is already there (a replay raced the check). */
  begin(command: Command, nowMs: number): boolean {
    const result = this.db
      .prepare(
        `INSERT OR IGNORE INTO command_journal
           (command_id, type, key_id, received_at, expires_at, state, command, step, outcome, updated_at)
         VALUES (?, ?, ?, ?, ?, 'running', ?, NULL, NULL, ?)`,
      )
      .run(command.id, command.type, command.keyId, nowMs, command.expiresAt, JSON.stringify(command), nowMs);
    return result.changes === 1;
  }

  /**
   * Persists a handler's progress. `durable` forces it to disk before returning (a WAL checkpoint syncs the
   * file even with synchronous=NORMAL): state machines set it before steps a power cut must not undo.
   */
  saveStep(commandId: string, step: unknown, durable = false, nowMs = Date.now()): void {
    this.db
      .prepare(`UPDATE command_journal SET step = ?, updated_at = ? WHERE command_id = ? AND state = 'running'`)
      .run(JSON.stringify(step), nowMs, commandId);
    if (durable) this.db.pragma('wal_checkpoint(FULL)');
  }

  finish(commandId: string, state: 'succeeded' | 'failed', outcome: string, nowMs = Date.now()): void {
    this.db
      .prepare(
        `UPDATE command_journal
            SET state = ?, outcome = ?, updated_at = ?, command = json_set(command, '$.args', json('{}'))
          WHERE command_id = ? AND state = 'running'`,
      )
      .run(state, outcome, nowMs, commandId);
  }

  get(commandId: string): JournalEntry | undefined {
    const row = this.db.prepare('SELECT * FROM command_journal WHERE command_id = ?').get(commandId) as Row | undefined;
    return row && toEntry(row);
  }

  /** Commands that were accepted but never finished, oldest first: the ones a crash interrupted. */
  running(): JournalEntry[] {
    const rows = this.db
      .prepare(`SELECT * FROM command_journal WHERE state = 'running' ORDER BY received_at, command_id`)
      .all() as Row[];
    return rows.map(toEntry);
  }

  /**
   * Forgets finished commands whose validity ended: the expiry check refuses them now without the journal. Over
   * maxEntries, the oldest finished entries go too, and the replay horizon moves past them, so that they stay refused.
   */
  prune(nowMs: number, clockSkewMs: number): number {
    // The bare column on one side, so that the expires_at index answers it: this runs after every command.
    const expired = this.db
      .prepare(`DELETE FROM command_journal WHERE expires_at < ? AND state != 'running'`)
      .run(nowMs - clockSkewMs).changes;
    return expired + this.cap();
  }

  private cap(): number {
    const entries = this.db.prepare('SELECT COUNT(*) FROM command_journal').pluck().get() as number;
    if (entries <= this.maxEntries) return 0;
    const excess = entries - Math.floor(this.maxEntries * CAP_TO);
    const cut = this.db
      .prepare(`SELECT received_at FROM command_journal WHERE state != 'running' ORDER BY received_at LIMIT 1 OFFSET ?`)
      .pluck()
      .get(excess - 1) as number | undefined;
    if (cut === undefined) return 0;
    // An entry received at or before `cut` was issued at most the clock-skew allowance later, which is exactly what
    // the horizon check refuses (issuedAt < horizon + skew).
    return this.db.transaction(() => {
      raiseJournalHorizon(this.db, cut + 1);
      return this.db.prepare(`DELETE FROM command_journal WHERE state != 'running' AND received_at <= ?`).run(cut).changes;
    })();
  }
}

function toEntry(row: Row): JournalEntry {
  return {
    commandId: row.command_id,
    type: row.type,
    state: row.state,
    receivedAt: row.received_at,
    expiresAt: row.expires_at,
    command: JSON.parse(row.command) as Command,
    step: row.step === null ? undefined : (JSON.parse(row.step) as unknown),
    outcome: row.outcome,
  };
}
