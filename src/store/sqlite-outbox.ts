import { randomUUID } from 'node:crypto';
import type { Database } from 'better-sqlite3';
import type { Logger } from '../lib/logger.js';
import { BudgetLedger, EnqueueNotifier } from './outbox-budget.js';
import { prepareRecord } from './outbox-records.js';
import { consecutiveRuns, isDiskFull, prepareOutboxStatements, toQueued, type OutboxStatements, type Row } from './outbox-sql.js';
import {
  OUTBOX_CLASSES,
  zeroCounts,
  type NewOutboxRecord,
  type OutboxStore,
  type OutboxClass,
  type OutboxLimits,
  type OutboxRecord,
  type OutboxStats,
  type QueuedRecord,
  type Unsubscribe,
} from './outbox.js';

/** Where a condition worth keeping goes (the local event log). */
export interface ConditionRecorder {
  record(kind: string, detail: Record<string, unknown>): void;
}

export interface SqliteOutboxOptions {
  limits: OutboxLimits;
  logger?: Logger;
  conditions?: ConditionRecorder;
  now?: () => number;
}

/** The WAL is truncated back to this after a checkpoint, so a burst (a week of backlog drained) leaves no big file. */
const WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024;
/** Disk full: each attempt sheds a tenth of the cheapest class (at most this many rows) and tries again. */
const SHED_CHUNK_MAX_ROWS = 1000;
const SHED_ATTEMPTS_MAX = 8;
const SYNCHRONOUS_FULL = 2;

/**
 * The outbox in the state database (table `outbox`, migration 2).
 *
 * Durability, chosen per class from docs/benchmarks.md ("Outbox"):
 * - event and result commit with synchronous=FULL (the WAL is fsynced before enqueue returns): they are rare and
 *   each one matters (a crashloop, a command's outcome), so they survive a power cut.
 * - status commits with synchronous=NORMAL: it survives a crash of fleetlet (the WAL write happened), but a power
 *   cut may lose the last seconds of samples. A sample is superseded by the next one 30 s later, and skipping
 *   the fsync saves the forced flush of a page every interval on an SD card. A later FULL commit persists it too.
 * - acknowledge (deletes) commit with NORMAL: a delete lost in a power cut only means a re-send with the same id.
 *
 * Disk full (SQLITE_FULL) never escapes: the outbox sheds the oldest status (then events, then results, never
 * shedding older reports to store a new status), retries, counts what it dropped and notes the condition.
 */
export class SqliteOutbox implements OutboxStore {
  private readonly ledger: BudgetLedger;
  private readonly notifier = new EnqueueNotifier();
  private readonly now: () => number;
  private readonly defaultSynchronous: number;
  private seq: number;
  private inDiskFullEpisode = false;
  private totalsMayDrift = false;
  private readonly statements: OutboxStatements;

  constructor(
    private readonly db: Database,
    private readonly options: SqliteOutboxOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.ledger = new BudgetLedger(options.limits);
    this.defaultSynchronous = Number(db.pragma('synchronous', { simple: true }));
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    this.statements = prepareOutboxStatements(db);
    this.seq = this.loadTotals();
  }

  enqueue(record: NewOutboxRecord): OutboxRecord {
    return this.enqueueMany([record])[0]!;
  }

  enqueueMany(inputs: readonly NewOutboxRecord[]): OutboxRecord[] {
    if (inputs.length === 0) return [];
    this.resyncIfNeeded();
    if (this.db.inTransaction) this.totalsMayDrift = true;
    let records: OutboxRecord[];
    try {
      records = this.write(inputs);
      if (this.inDiskFullEpisode) this.endDiskFullEpisode();
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      records = this.writeWhenFull(inputs);
    }
    if (records.some((record) => record.seq > 0)) this.notifier.notify();
    return records;
  }

  pending(afterSeq: number, limit: number): QueuedRecord[] {
    return (this.statements.pending.all(afterSeq, limit) as Row[]).map(toQueued);
  }

  latest(cls: OutboxClass): QueuedRecord | undefined {
    const row = this.statements.latest.get(cls) as Row | undefined;
    return row && toQueued(row);
  }

  lastSeq(): number {
    return this.seq;
  }

  acknowledge(seqs: readonly number[]): number {
    if (seqs.length === 0) return 0;
    this.resyncIfNeeded();
    const rollback = this.ledger.snapshot();
    try {
      return this.db.transaction(() => {
        let deleted = 0;
        // PUBACKs come in runs of consecutive seqs: one statement per run instead of one per record.
        for (const [first, last] of consecutiveRuns(seqs)) {
          const totals = this.statements.totalsBetween.all(first, last) as { class: OutboxClass; n: number; b: number }[];
          this.statements.deleteBetween.run(first, last);
          for (const { class: cls, n, b } of totals) {
            this.ledger.rows[cls] -= n;
            this.ledger.bytes[cls] -= b;
            deleted += n;
          }
        }
        return deleted;
      })();
    } catch (err) {
      rollback();
      throw err;
    }
  }

  stats(): OutboxStats {
    this.resyncIfNeeded();
    return this.ledger.stats();
  }

  onEnqueue(listener: () => void): Unsubscribe {
    return this.notifier.subscribe(listener);
  }

  /** One transaction for all inputs; the ledger and seq roll back with it. */
  private write(inputs: readonly NewOutboxRecord[]): OutboxRecord[] {
    const rollback = this.ledger.snapshot();
    const seqBefore = this.seq;
    const durable = inputs.some((input) => input.class !== 'status');
    try {
      return this.withSynchronous(durable, () =>
        this.db.transaction(() => {
          const records = inputs.map((input) => this.insert(input));
          this.saveCountersIfChanged();
          return records;
        })(),
      );
    } catch (err) {
      rollback();
      this.seq = seqBefore;
      throw err;
    }
  }

  private insert(input: NewOutboxRecord): OutboxRecord {
    const drops = input.class === 'status' && this.ledger.hasReport() ? this.ledger.report() : undefined;
    const { record, queued, bytes } = prepareRecord(input, {
      seq: this.seq + 1,
      messageId: randomUUID(),
      createdAt: this.now(),
      maxRecordBytes: this.options.limits.maxRecordBytes,
      drops,
    });
    this.statements.insert.run(
      queued.seq,
      queued.messageId,
      queued.class,
      queued.topic,
      queued.body,
      queued.qos,
      queued.retain ? 1 : 0,
      queued.createdAt,
      bytes,
    );
    this.seq = queued.seq;
    this.ledger.added(input.class, bytes);
    this.ledger.shedOverBudget((cls) => (this.statements.evictOldest.get(cls) as { bytes: number } | undefined)?.bytes);
    return record;
  }

  private writeWhenFull(inputs: readonly NewOutboxRecord[]): OutboxRecord[] {
    this.ledger.noteDiskFull(this.now());
    this.startDiskFullEpisode();
    const onlyStatus = inputs.every((input) => input.class === 'status');
    for (let attempt = 0; attempt < SHED_ATTEMPTS_MAX; attempt += 1) {
      if (!this.shedForSpace(onlyStatus)) break;
      try {
        return this.write(inputs);
      } catch (err) {
        if (!isDiskFull(err)) throw err;
      }
    }
    // Nothing left that may be shed, or still no room: these records are lost, and counted for the next status.
    for (const input of inputs) this.ledger.drop(input.class);
    this.options.logger?.error({ records: inputs.length }, 'outbox: disk full and nothing left to shed; records dropped');
    return inputs.map((input) => unstored(input, this.now()));
  }

  /** Deletes a chunk of the oldest records of the cheapest class that may go; false when none may. */
  private shedForSpace(onlyStatus: boolean): boolean {
    const cls = OUTBOX_CLASSES.find((c) => this.ledger.rows[c] > 0 && (c === 'status' || !onlyStatus));
    if (!cls) return false;
    const chunk = Math.min(SHED_CHUNK_MAX_ROWS, Math.max(1, Math.ceil(this.ledger.rows[cls] / 10)));
    const rollback = this.ledger.snapshot();
    try {
      const shed = this.db.transaction(() => {
        const rows = this.statements.shedOldest.all(cls, chunk) as { bytes: number }[];
        for (const row of rows) this.ledger.removed(cls, row.bytes);
        this.ledger.drop(cls, rows.length);
        this.saveCountersIfChanged();
        return rows.length;
      })();
      this.options.logger?.warn({ class: cls, shed }, 'outbox: disk full, shed the oldest records');
      return shed > 0;
    } catch (err) {
      rollback();
      if (isDiskFull(err)) return false;
      throw err;
    }
  }

  private startDiskFullEpisode(): void {
    if (this.inDiskFullEpisode) return;
    this.inDiskFullEpisode = true;
    this.options.logger?.warn('outbox: disk full; shedding status records to keep going');
    this.recordCondition('outbox.disk_full', { at: this.ledger.diskFullAt });
  }

  private endDiskFullEpisode(): void {
    this.inDiskFullEpisode = false;
    this.options.logger?.info('outbox: writes succeed again after a disk-full condition');
    this.recordCondition('outbox.disk_full_cleared', { at: this.now() });
  }

  private recordCondition(kind: string, detail: Record<string, unknown>): void {
    try {
      this.options.conditions?.record(kind, detail);
    } catch (err) {
      // The event log lives on the same full disk; the condition is also in stats() and the next status.
      this.options.logger?.debug({ err, kind }, 'outbox: could not record a condition');
    }
  }

  private saveCountersIfChanged(): void {
    if (!this.ledger.countersDirty) return;
    for (const cls of OUTBOX_CLASSES) this.statements.saveCounter.run(`dropped.${cls}`, this.ledger.dropped[cls]);
    this.statements.saveCounter.run('diskFull', this.ledger.diskFull);
    this.ledger.countersDirty = false;
  }

  /**
   * Runs work with synchronous=FULL when it must survive a power cut. Inside a caller's transaction (a producer that
   * writes its own state and the record atomically) SQLite refuses to change it; that commit is the caller's.
   */
  private withSynchronous<T>(durable: boolean, work: () => T): T {
    if (!durable || this.defaultSynchronous >= SYNCHRONOUS_FULL || this.db.inTransaction) return work();
    this.db.pragma('synchronous = FULL');
    try {
      return work();
    } finally {
      this.db.pragma(`synchronous = ${this.defaultSynchronous}`);
    }
  }

  /** Totals and counters from the table (once, at open); returns the highest seq. */
  private loadTotals(): number {
    this.ledger.rows = zeroCounts();
    this.ledger.bytes = zeroCounts();
    const totals = this.db.prepare('SELECT class, COUNT(*) AS n, SUM(bytes) AS b FROM outbox GROUP BY class').all() as {
      class: OutboxClass;
      n: number;
      b: number;
    }[];
    for (const row of totals) {
      if (!OUTBOX_CLASSES.includes(row.class)) continue;
      this.ledger.rows[row.class] = row.n;
      this.ledger.bytes[row.class] = row.b;
    }
    const counters = this.db.prepare('SELECT name, value FROM outbox_counters').all() as { name: string; value: number }[];
    for (const { name, value } of counters) {
      if (name === 'diskFull') this.ledger.diskFull = value;
      const cls = OUTBOX_CLASSES.find((c) => name === `dropped.${c}`);
      if (cls) this.ledger.dropped[cls] = value;
    }
    const max = this.db.prepare('SELECT MAX(seq) AS seq FROM outbox').get() as { seq: number | null };
    return max.seq ?? 0;
  }

  /**
   * A record enqueued inside a caller's transaction is undone if the caller rolls back, which the ledger cannot
   * see: after such an enqueue the totals are read again from the table before they are next used.
   */
  private resyncIfNeeded(): void {
    if (!this.totalsMayDrift || this.db.inTransaction) return;
    this.totalsMayDrift = false;
    this.seq = Math.max(this.seq, this.loadTotals());
  }
}

function unstored(input: NewOutboxRecord, createdAt: number): OutboxRecord {
  return {
    seq: 0,
    messageId: randomUUID(),
    class: input.class,
    topic: input.topic,
    payload: input.payload,
    qos: input.qos ?? 1,
    retain: input.retain ?? false,
    createdAt,
  };
}
