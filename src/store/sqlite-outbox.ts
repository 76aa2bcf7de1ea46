import { randomUUID } from 'node:crypto';
import type { Database } from 'better-sqlite3';
import type { Logger } from '../lib/logger.js';
import { BudgetLedger, EnqueueNotifier } from './outbox-budget.js';
import { AckMark } from './outbox-ack-mark.js';
import { DiskFullEpisode, type ConditionRecorder } from './outbox-disk-full.js';
import { prepareRecord, toOutgoingRecord, unstored, type PreparedRecord } from './outbox-records.js';
import { isDiskFull, loadLedger, prepareOutboxStatements, toOutgoing, toQueued } from './outbox-sql.js';
import type { OutboxStatements, OutgoingRow, Row } from './outbox-sql.js';
import {
  OUTBOX_CLASSES,
  type NewOutboxRecord,
  type OutboxStore,
  type OutboxClass,
  type OutboxLimits,
  type OutboxRecord,
  type OutboxStats,
  type OutgoingRecord,
  type QueuedRecord,
  type Unsubscribe,
} from './outbox.js';
import type { StatusSpool } from './status-spool.js';

export interface SqliteOutboxOptions {
  limits: OutboxLimits;
  logger?: Logger;
  conditions?: ConditionRecorder;
  now?: () => number;
  /** Where status samples wait in RAM before they reach the database (see the class comment); none: straight in. */
  statusSpool?: StatusSpool;
}

/** The WAL is truncated back to this after a checkpoint, so a burst (a week of backlog drained) leaves no big file. */
const WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024;
/** Disk full: each attempt sheds a tenth of the cheapest class (at most this many rows) and tries again. */
const SHED_CHUNK_MAX_ROWS = 1000;
const SHED_ATTEMPTS_MAX = 8;
const SYNCHRONOUS_FULL = 2;
/** Spooled status goes to the database in one commit once this many wait, or the oldest waited this long. */
const SPOOL_COMMIT_RECORDS = 20;
const SPOOL_COMMIT_AGE_MS = 10 * 60_000;
/** While the disk refuses the commit, the oldest spooled samples are dropped beyond this many. */
const SPOOL_MAX_RECORDS = 1000;

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
 * - with a `statusSpool` (RAM), status is not written to the database at enqueue: the drainer publishes it from the
 *   spool and the PUBACK removes it, so while the link is up a status costs no disk write at all. Samples still
 *   spooled reach the database in one commit once SPOOL_COMMIT_RECORDS wait or the oldest waited SPOOL_COMMIT_AGE_MS
 *   (a link down, or a PUBACK that did not come in time), and at a clean stop. A crash of fleetlet loses nothing
 *   (the next start commits what the spool holds); a power cut loses the samples spooled since the last commit.
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
  private readonly diskFullEpisode: DiskFullEpisode;
  private totalsMayDrift = false;
  private readonly statements: OutboxStatements;
  private readonly ackMark: AckMark;

  constructor(
    private readonly db: Database,
    private readonly options: SqliteOutboxOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.ledger = new BudgetLedger(options.limits);
    this.defaultSynchronous = Number(db.pragma('synchronous', { simple: true }));
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    this.statements = prepareOutboxStatements(db);
    this.diskFullEpisode = new DiskFullEpisode(options.logger, options.conditions);
    const loaded = loadLedger(db, this.ledger);
    this.seq = loaded.lastSeq;
    this.ackMark = new AckMark(this.statements, this.ledger, loaded.ackedThrough, options.statusSpool);
    // Rows an interrupted drain left below the mark go now, so that they do not hold disk space for long.
    this.ackMark.purge();
    if (options.statusSpool) this.commitRecoveredSpool(options.statusSpool);
  }

  enqueue(record: NewOutboxRecord): OutboxRecord {
    return this.enqueueMany([record])[0]!;
  }

  enqueueMany(inputs: readonly NewOutboxRecord[]): OutboxRecord[] {
    if (inputs.length === 0) return [];
    this.resyncIfNeeded();
    const spool = this.options.statusSpool;
    if (spool && !this.db.inTransaction && inputs.every((input) => input.class === 'status')) return this.spoolStatus(spool, inputs);
    if (this.db.inTransaction) this.totalsMayDrift = true;
    let records: OutboxRecord[];
    try {
      records = this.write(inputs);
      this.diskFullEpisode.endIfActive(this.now());
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      records = this.writeWhenFull(inputs);
    }
    if (records.some((record) => record.seq > 0)) this.notifier.notify();
    return records;
  }

  pending(afterSeq: number, limit: number): QueuedRecord[] {
    const stored = (this.statements.pending.all(Math.max(afterSeq, this.ackMark.through), limit) as Row[]).map(toQueued);
    const spooled = this.options.statusSpool?.after(afterSeq, limit) ?? [];
    if (spooled.length === 0) return stored;
    // Every stored row not returned has a higher seq than all returned, so the merge needs only these two lists.
    return [...stored, ...spooled].sort((a, b) => a.seq - b.seq).slice(0, limit);
  }

  outgoing(afterSeq: number, limit: number, historicalUpTo: number): OutgoingRecord[] {
    const rows = this.statements.outgoing.all(Math.max(afterSeq, this.ackMark.through), limit) as OutgoingRow[];
    const stored = rows.map((row) => toOutgoing(row, historicalUpTo));
    const spooled = this.options.statusSpool?.after(afterSeq, limit) ?? [];
    if (spooled.length === 0) return stored;
    const fromSpool = spooled.map((queued) => toOutgoingRecord(queued, historicalUpTo));
    return [...stored, ...fromSpool].sort((a, b) => a.seq - b.seq).slice(0, limit);
  }

  latest(cls: OutboxClass): QueuedRecord | undefined {
    // Spooled samples are newer than any stored status: the spool is committed whole, before newer samples join it.
    if (cls === 'status') {
      const spooled = this.options.statusSpool?.newest();
      if (spooled) return spooled.queued;
    }
    const row = this.statements.latest.get(cls, this.ackMark.through) as Row | undefined;
    return row && toQueued(row);
  }

  lastSeq(): number {
    return this.seq;
  }

  acknowledge(acked: readonly number[]): number {
    const { removed, others: seqs } = this.options.statusSpool?.remove(acked) ?? { removed: [], others: acked };
    for (const { bytes } of removed) this.ledger.removed('status', bytes);
    const fromSpool = removed.length;
    if (seqs.length === 0) return fromSpool;
    this.resyncIfNeeded();
    const rollback = this.ledger.snapshot();
    const markBefore = this.ackMark.through;
    try {
      return this.db.transaction(() => this.ackMark.acknowledge(seqs))() + fromSpool;
    } catch (err) {
      rollback();
      this.ackMark.through = markBefore;
      throw err;
    }
  }

  stats(): OutboxStats {
    this.resyncIfNeeded();
    return this.ledger.stats();
  }

  /** Commits whatever status the spool holds (at a clean stop, so that a reboot after it loses no sample). */
  flushStatusSpool(): void {
    const spool = this.options.statusSpool;
    if (!spool) return;
    this.commitSpool(spool, true);
    spool.removeIfEmpty();
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

  private prepare(input: NewOutboxRecord, seq: number): PreparedRecord {
    const drops = input.class === 'status' && this.ledger.hasReport() ? this.ledger.report() : undefined;
    return prepareRecord(input, {
      seq,
      messageId: randomUUID(),
      createdAt: this.now(),
      maxRecordBytes: this.options.limits.maxRecordBytes,
      drops,
    });
  }

  private insert(input: NewOutboxRecord): OutboxRecord {
    const { record, queued, bytes } = this.prepare(input, this.seq + 1);
    this.insertQueued(queued, bytes);
    return record;
  }

  private insertQueued(queued: QueuedRecord, bytes: number): void {
    this.insertRow(queued, bytes);
    this.ledger.added(queued.class, bytes);
    this.ledger.shedOverBudget((cls) => this.evictOldest(cls));
  }

  /** The oldest record of a class goes (over budget): a stored one, or for status a spooled one once none is stored. */
  private evictOldest(cls: OutboxClass): number | undefined {
    const stored = (this.statements.evictOldest.get(cls, this.ackMark.through) as { bytes: number } | undefined)?.bytes;
    if (stored !== undefined || cls !== 'status') return stored;
    return this.options.statusSpool?.removeOldest()?.bytes;
  }

  private insertRow(queued: QueuedRecord, bytes: number): void {
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
    this.seq = Math.max(this.seq, queued.seq);
  }

  /** Status into the RAM spool: no database write now (see the class comment for when it gets one). */
  private spoolStatus(spool: StatusSpool, inputs: readonly NewOutboxRecord[]): OutboxRecord[] {
    const prepared = inputs.map((input, i) => this.prepare(input, this.seq + 1 + i));
    const spooledAt = this.now();
    this.seq += prepared.length;
    // Spooled samples count against the budgets like stored ones (the spool sheds like the table does).
    for (const { queued, bytes } of prepared) {
      spool.add({ queued, bytes, spooledAt });
      this.ledger.added('status', bytes);
      this.ledger.shedOverBudget((cls) => this.evictOldest(cls));
    }
    this.commitSpool(spool, false);
    while (spool.size > SPOOL_MAX_RECORDS) {
      this.ledger.removed('status', spool.removeOldest()!.bytes);
      this.ledger.drop('status');
    }
    this.notifier.notify();
    return prepared.map((p) => p.record);
  }

  /** One commit of every spooled sample when enough wait or the oldest waited long enough (or `force`). */
  private commitSpool(spool: StatusSpool, force: boolean): void {
    if (spool.size === 0) return;
    const due = spool.size >= SPOOL_COMMIT_RECORDS || this.now() - spool.oldestSpooledAt()! >= SPOOL_COMMIT_AGE_MS;
    if (!force && !due) return;
    const records = spool.all();
    try {
      // Already counted in the ledger when they were spooled.
      this.db.transaction(() => {
        for (const { queued, bytes } of records) this.insertRow(queued, bytes);
        this.saveCountersIfChanged();
      })();
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      // They stay in RAM and are tried again with the next sample; beyond SPOOL_MAX_RECORDS the oldest are dropped.
      this.ledger.noteDiskFull(this.now());
      this.diskFullEpisode.start(this.ledger.diskFullAt);
      return;
    }
    spool.clear();
    this.diskFullEpisode.endIfActive(this.now());
  }

  /** What a killed fleetlet left in the spool goes into the database first, with seqs after everything stored. */
  private commitRecoveredSpool(spool: StatusSpool): void {
    const left = spool.recover(this.options.limits.maxRecordBytes, (file, err) =>
      this.options.logger?.warn({ err, file }, 'outbox: skipped an unreadable spooled status'),
    );
    if (left.length === 0) return;
    left.forEach((record, i) => (record.queued = { ...record.queued, seq: this.seq + 1 + i }));
    const [rollback, seqBefore] = [this.ledger.snapshot(), this.seq];
    try {
      this.db.transaction(() => left.forEach(({ queued, bytes }) => this.insertQueued(queued, bytes)))();
    } catch (err) {
      rollback();
      this.seq = seqBefore;
      if (!isDiskFull(err)) throw err;
      this.ledger.drop('status', left.length);
    }
    spool.clear();
  }

  private writeWhenFull(inputs: readonly NewOutboxRecord[]): OutboxRecord[] {
    this.ledger.noteDiskFull(this.now());
    this.diskFullEpisode.start(this.ledger.diskFullAt);
    if (this.ackMark.purge() > 0) {
      try {
        return this.write(inputs);
      } catch (err) {
        if (!isDiskFull(err)) throw err;
      }
    }
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
        const rows = this.statements.shedOldest.all(cls, this.ackMark.through, chunk) as { bytes: number }[];
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

  /**
   * A record enqueued inside a caller's transaction is undone if the caller rolls back, which the ledger cannot
   * see: after such an enqueue the totals are read again from the table before they are next used.
   */
  private resyncIfNeeded(): void {
    if (!this.totalsMayDrift || this.db.inTransaction) return;
    this.totalsMayDrift = false;
    this.seq = Math.max(this.seq, loadLedger(this.db, this.ledger).lastSeq);
    // The table knows nothing of the spool, whose samples count against the budgets too.
    for (const { bytes } of this.options.statusSpool?.all() ?? []) this.ledger.added('status', bytes);
  }
}
