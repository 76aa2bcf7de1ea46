import { randomUUID } from 'node:crypto';
import { BudgetLedger, EnqueueNotifier } from './outbox-budget.js';
import { prepareRecord, toOutgoingRecord } from './outbox-records.js';
import type {
  NewOutboxRecord,
  OutboxStore,
  OutboxClass,
  OutboxLimits,
  OutboxRecord,
  OutboxStats,
  OutgoingRecord,
  QueuedRecord,
  Unsubscribe,
} from './outbox.js';

export interface MemoryOutboxOptions {
  limits: OutboxLimits;
  now?: () => number;
}

interface Stored {
  queued: QueuedRecord;
  bytes: number;
}

/**
 * The outbox in memory, for tests of the parts that produce or drain records. Same budgets, ordering and drop
 * accounting as SqliteOutbox (one contract suite checks both); it is not durable.
 */
export class MemoryOutbox implements OutboxStore {
  private records: Stored[] = [];
  private seq = 0;
  private readonly ledger: BudgetLedger;
  private readonly notifier = new EnqueueNotifier();
  private readonly now: () => number;

  // jscpd:ignore-start: the same Outbox contract as SqliteOutbox, so its set-up and single enqueue read alike.
  constructor(private readonly options: MemoryOutboxOptions) {
    this.ledger = new BudgetLedger(options.limits);
    this.now = options.now ?? Date.now;
  }

  enqueue(record: NewOutboxRecord): OutboxRecord {
    return this.enqueueMany([record])[0]!;
  }
  // jscpd:ignore-end

  enqueueMany(inputs: readonly NewOutboxRecord[]): OutboxRecord[] {
    if (inputs.length === 0) return [];
    const rollback = this.ledger.snapshot();
    const [savedRecords, savedSeq] = [[...this.records], this.seq];
    try {
      const out = inputs.map((input) => {
        const drops = input.class === 'status' && this.ledger.hasReport() ? this.ledger.report() : undefined;
        const prepared = prepareRecord(input, {
          seq: ++this.seq,
          messageId: randomUUID(),
          createdAt: this.now(),
          maxRecordBytes: this.options.limits.maxRecordBytes,
          drops,
        });
        this.records.push({ queued: prepared.queued, bytes: prepared.bytes });
        this.ledger.added(input.class, prepared.bytes);
        this.ledger.shedOverBudget((cls) => this.evictOldest(cls));
        return prepared.record;
      });
      this.ledger.countersDirty = false;
      this.notifier.notify();
      return out;
    } catch (err) {
      rollback();
      this.records = savedRecords;
      this.seq = savedSeq;
      throw err;
    }
  }

  pending(afterSeq: number, limit: number): QueuedRecord[] {
    const out: QueuedRecord[] = [];
    for (const stored of this.records) {
      if (out.length >= limit) break;
      if (stored.queued.seq > afterSeq) out.push(stored.queued);
    }
    return out;
  }

  outgoing(afterSeq: number, limit: number, historicalUpTo: number): OutgoingRecord[] {
    return this.pending(afterSeq, limit).map((queued) => toOutgoingRecord(queued, historicalUpTo));
  }

  latest(cls: OutboxClass): QueuedRecord | undefined {
    return this.records.findLast((stored) => stored.queued.class === cls)?.queued;
  }

  lastSeq(): number {
    return this.seq;
  }

  acknowledge(seqs: readonly number[]): number {
    const acked = new Set(seqs);
    const kept: Stored[] = [];
    let deleted = 0;
    for (const stored of this.records) {
      if (!acked.has(stored.queued.seq)) {
        kept.push(stored);
        continue;
      }
      this.ledger.removed(stored.queued.class, stored.bytes);
      deleted += 1;
    }
    this.records = kept;
    return deleted;
  }

  stats(): OutboxStats {
    return this.ledger.stats();
  }

  onEnqueue(listener: () => void): Unsubscribe {
    return this.notifier.subscribe(listener);
  }

  private evictOldest(cls: OutboxClass): number | undefined {
    const index = this.records.findIndex((stored) => stored.queued.class === cls);
    if (index < 0) return undefined;
    const [evicted] = this.records.splice(index, 1);
    return evicted!.bytes;
  }
}
