import type { OutboxClass } from './outbox.js';
import type { BudgetLedger } from './outbox-budget.js';
import { ACKED_THROUGH, consecutiveRuns, isDiskFull, type OutboxStatements } from './outbox-sql.js';
import type { StatusSpool } from './status-spool.js';

/**
 * How SqliteOutbox deletes what the broker acknowledged, cheaply enough for a drain at the publisher's speed.
 *
 * Deleting rows one run at a time costs SQLite about 1.5 us a row (every page rewritten through the WAL), a third of
 * what the drain spends beyond a bare publisher (docs/benchmarks.md, "Drain of a 100,000-record backlog"). Instead,
 * acknowledgements in seq order only move a persisted mark, `ackedThrough`, in the same transaction: every row at or
 * below it counts as deleted (every query of the outbox skips it), and once no row above it is left, one
 * `DELETE FROM outbox` without a WHERE frees the whole table in a step (SQLite's truncate optimisation).
 *
 * The rule that keeps it safe: the mark moves to the end of an acknowledged run only when no stored row and no
 * spooled status lies between the mark and that run, so every row at or below it was acknowledged. Acknowledgements
 * out of that order (records sent ahead of the backlog, or past a record still in flight) are deleted as before. The
 * stored mark is also the floor of the next seq after a restart, so no new record is ever taken for acknowledged.
 * Rows below the mark that are still stored (a drain interrupted before its end) are deleted at the next open or
 * when the disk is full.
 */
export class AckMark {
  constructor(
    private readonly statements: OutboxStatements,
    private readonly ledger: BudgetLedger,
    /** Every row with seq <= through was acknowledged; loaded from `outbox_counters`. */
    public through: number,
    private readonly spool: StatusSpool | undefined,
  ) {}

  /** Acknowledges stored rows; call inside a transaction, and on an error restore the ledger and `through` with it. */
  acknowledge(seqs: readonly number[]): number {
    const before = this.through;
    let deleted = 0;
    for (const [runFirst, last] of consecutiveRuns(seqs)) {
      if (last <= this.through) continue;
      const first = Math.max(runFirst, this.through + 1);
      const totals = this.statements.totalsBetween.all(first, last) as { class: OutboxClass; n: number; b: number }[];
      for (const { class: cls, n, b } of totals) {
        this.ledger.rows[cls] -= n;
        this.ledger.bytes[cls] -= b;
        deleted += n;
      }
      if (this.nothingUnackedBefore(first, last)) this.through = last;
      else this.statements.deleteBetween.run(first, last);
    }
    if (this.through !== before) {
      // With no row left above the mark, none is left below it either once the table is emptied: the stored mark
      // may stay behind then, which spares an SD card the write of its page with every acknowledgement.
      if (this.statements.firstAbove.get(this.through) === undefined) this.statements.deleteAll.run();
      else this.statements.saveCounter.run(ACKED_THROUGH, this.through);
    }
    return deleted;
  }

  /**
   * Deletes the rows at or below the mark that are still stored (left by an interrupted drain): they hold space for
   * nothing. Returns how many; 0 also when the disk was too full even for that.
   */
  purge(): number {
    try {
      return this.statements.deleteThrough.run(this.through).changes;
    } catch (err) {
      if (isDiskFull(err)) return 0;
      throw err;
    }
  }

  /** No stored row in (through, first) and no spooled status in (through, last]: the mark may move to `last`. */
  private nothingUnackedBefore(first: number, last: number): boolean {
    const nextStored = this.statements.firstAbove.get(this.through) as number | undefined;
    if (nextStored !== undefined && nextStored < first) return false;
    const nextSpooled = this.spool?.after(this.through, 1)[0];
    return nextSpooled === undefined || nextSpooled.seq > last;
  }
}
