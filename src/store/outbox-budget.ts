import {
  OUTBOX_CLASSES,
  zeroCounts,
  type ClassCounts,
  type OutboxClass,
  type OutboxLimits,
  type OutboxStats,
} from './outbox.js';
import type { DropReport } from './outbox-records.js';

/**
 * The outbox's running totals (rows and bytes per class) and its drop counters, kept in memory so that budget
 * checks cost no query. Both implementations use it; SqliteOutbox also persists the counters.
 */
export class BudgetLedger {
  rows: ClassCounts = zeroCounts();
  bytes: ClassCounts = zeroCounts();
  dropped: ClassCounts = zeroCounts();
  diskFull = 0;
  diskFullAt: number | undefined;
  /** Set when the counters changed and should be written with the current transaction. */
  countersDirty = false;

  constructor(private readonly limits: OutboxLimits) {}

  added(cls: OutboxClass, bytes: number): void {
    this.rows[cls] += 1;
    this.bytes[cls] += bytes;
  }

  removed(cls: OutboxClass, bytes: number): void {
    this.rows[cls] -= 1;
    this.bytes[cls] -= bytes;
  }

  drop(cls: OutboxClass, count = 1): void {
    this.dropped[cls] += count;
    this.countersDirty = true;
  }

  noteDiskFull(at: number): void {
    this.diskFull += 1;
    this.diskFullAt = at;
    this.countersDirty = true;
  }

  /** The class to shed from next to get back within budget, or undefined when within budget. */
  nextToShed(): OutboxClass | undefined {
    for (const cls of OUTBOX_CLASSES) {
      const budget = this.limits.budgets[cls];
      if (this.rows[cls] > budget.maxRows || this.bytes[cls] > budget.maxBytes) return cls;
    }
    const total = OUTBOX_CLASSES.reduce((sum, cls) => sum + this.bytes[cls], 0);
    if (total <= this.limits.maxTotalBytes) return undefined;
    return OUTBOX_CLASSES.find((cls) => this.rows[cls] > 0);
  }

  /** Sheds the oldest records until within budget; `evictOldest` deletes one and returns its bytes. */
  shedOverBudget(evictOldest: (cls: OutboxClass) => number | undefined): void {
    for (let cls = this.nextToShed(); cls !== undefined; cls = this.nextToShed()) {
      const bytes = evictOldest(cls);
      if (bytes === undefined) return; // totals disagree with the store; never loop forever on that
      this.removed(cls, bytes);
      this.drop(cls);
    }
  }

  hasReport(): boolean {
    return this.diskFull > 0 || OUTBOX_CLASSES.some((cls) => this.dropped[cls] > 0);
  }

  /** Cumulative counts, carried by every status once something was dropped (so a lost status loses no count). */
  report(): DropReport {
    return { ...this.dropped, diskFull: this.diskFull };
  }

  /** For rolling back with a failed transaction. */
  snapshot(): () => void {
    const saved = {
      rows: { ...this.rows },
      bytes: { ...this.bytes },
      dropped: { ...this.dropped },
      diskFull: this.diskFull,
      countersDirty: this.countersDirty,
    };
    return () => {
      this.rows = saved.rows;
      this.bytes = saved.bytes;
      this.dropped = saved.dropped;
      this.diskFull = saved.diskFull;
      this.countersDirty = saved.countersDirty;
    };
  }

  stats(): OutboxStats {
    return {
      rows: { ...this.rows },
      bytes: { ...this.bytes },
      dropped: { ...this.dropped },
      diskFull: this.diskFull,
      diskFullAt: this.diskFullAt,
    };
  }
}

/** Calls listeners once per burst of enqueues, after the current synchronous work (so a loop of enqueues wakes once). */
export class EnqueueNotifier {
  private readonly listeners = new Set<() => void>();
  private scheduled = false;

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  notify(): void {
    if (this.scheduled || this.listeners.size === 0) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      for (const listener of [...this.listeners]) listener();
    });
  }
}
