import { afterEach, describe, expect, it } from 'vitest';
import type { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import { rec, sqliteOutbox, spooledSqliteOutbox, testLimits, type OutboxUnderTest } from '../fixtures/outbox-setup.js';

/**
 * The acknowledged mark of SqliteOutbox (src/store/outbox-ack-mark.ts), on real database files: acknowledgements in
 * seq order move a persisted mark instead of deleting row by row, so every check here looks at what a reopen sees.
 */

const range = (first: number, last: number) => Array.from({ length: last - first + 1 }, (_, i) => first + i);

function storedRows(subject: OutboxUnderTest): number {
  return subject.db!.prepare('SELECT COUNT(*) FROM outbox').pluck().get() as number;
}

describe('SqliteOutbox acknowledged mark', () => {
  let subject: OutboxUnderTest | undefined;
  afterEach(() => {
    subject?.close();
    subject = undefined;
  });

  it('frees the table once everything up to the mark is acknowledged, and takes no later record for acknowledged', () => {
    subject = sqliteOutbox(testLimits());
    subject.outbox.enqueueMany(range(1, 1000).map((n) => rec('status', n)));
    for (let first = 1; first <= 1000; first += 100) expect(subject.outbox.acknowledge(range(first, first + 99))).toBe(100);
    expect(storedRows(subject)).toBe(0);
    subject = subject.reopen!();
    expect(subject.outbox.stats().rows).toEqual({ status: 0, event: 0, result: 0 });
    expect(subject.outbox.pending(0, 10)).toEqual([]);
    // A seq at or below the stored mark would count as acknowledged the moment it was stored: a loss.
    const next = subject.outbox.enqueue(rec('event', 1));
    subject = subject.reopen!();
    expect(subject.outbox.pending(0, 10).map((r) => r.messageId)).toEqual([next.messageId]);
    expect(subject.outbox.stats().rows.event).toBe(1);
  });

  it('keeps a record still in flight when later ones are acknowledged first, across a reopen', () => {
    subject = sqliteOutbox(testLimits());
    const made = subject.outbox.enqueueMany(range(1, 10).map((n) => rec('event', n)));
    subject.outbox.acknowledge([1, 2]);
    expect(subject.outbox.acknowledge(range(4, 10))).toBe(7);
    subject = subject.reopen!();
    expect(subject.outbox.pending(0, 100).map((r) => r.messageId)).toEqual([made[2]!.messageId]);
    expect(subject.outbox.stats().rows.event).toBe(1);
    expect(subject.outbox.acknowledge([3])).toBe(1);
    subject = subject.reopen!();
    expect(subject.outbox.pending(0, 100)).toEqual([]);
    expect(subject.outbox.stats().rows.event).toBe(0);
  });

  it('does not move the mark past a spooled status that was not acknowledged', () => {
    subject = spooledSqliteOutbox(testLimits());
    const before = subject.outbox.enqueue(rec('event', 1));
    const status = subject.outbox.enqueue(rec('status', 2));
    const after = subject.outbox.enqueue(rec('event', 3));
    expect([before.seq, status.seq, after.seq]).toEqual([1, 2, 3]);
    expect(subject.outbox.acknowledge([before.seq, after.seq])).toBe(2);
    // The spooled sample reaches the table with its seq (2): below a mark at 3 it would count as acknowledged.
    (subject.outbox as SqliteOutbox).flushStatusSpool();
    subject = subject.reopen!();
    expect(subject.outbox.pending(0, 10).map((r) => r.messageId)).toEqual([status.messageId]);
  });

  it('deletes at the next open the acknowledged rows an interrupted drain left stored', () => {
    subject = sqliteOutbox(testLimits());
    const made = subject.outbox.enqueueMany(range(1, 100).map((n) => rec('status', n)));
    subject.outbox.acknowledge(range(1, 50));
    expect(subject.outbox.stats().rows.status).toBe(50);
    subject = subject.reopen!();
    expect(storedRows(subject)).toBe(50);
    expect(subject.outbox.pending(0, 1000).map((r) => r.messageId)).toEqual(made.slice(50).map((r) => r.messageId));
    expect(subject.outbox.latest('status')!.messageId).toBe(made[99]!.messageId);
  });

  it('sheds the oldest unacknowledged record over budget, not one below the mark', () => {
    subject = sqliteOutbox(testLimits({ budgets: { status: { maxRows: 10, maxBytes: 1 << 20 } } }));
    const made = subject.outbox.enqueueMany(range(1, 10).map((n) => rec('status', n)));
    subject.outbox.acknowledge(range(1, 5));
    const more = subject.outbox.enqueueMany(range(11, 16).map((n) => rec('status', n)));
    const expected = [...made.slice(6), ...more].map((r) => r.messageId);
    expect(subject.outbox.pending(0, 100).map((r) => r.messageId)).toEqual(expected);
    expect(subject.outbox.stats().rows.status).toBe(10);
    expect(subject.outbox.stats().dropped.status).toBe(1);
    subject = subject.reopen!();
    expect(subject.outbox.pending(0, 100).map((r) => r.messageId)).toEqual(expected);
    expect(subject.outbox.stats().rows.status).toBe(10);
  });

  it('on a full disk deletes the rows below the mark before it sheds anything', () => {
    subject = sqliteOutbox(testLimits());
    subject.outbox.enqueueMany(range(1, 400).map((n) => rec('status', n, 400)));
    // 300 acknowledged rows stay stored below the mark while 100 are left above it.
    subject.outbox.acknowledge(range(1, 300));
    expect(storedRows(subject)).toBe(400);
    // The database may not grow any more: what a full filesystem looks like to SQLite.
    subject.db!.pragma(`max_page_count = ${Number(subject.db!.pragma('page_count', { simple: true }))}`);
    for (let n = 0; n < 200; n++) expect(subject.outbox.enqueue(rec('status', 1000 + n, 400)).seq).toBeGreaterThan(0);
    const stats = subject.outbox.stats();
    expect(stats.diskFull).toBeGreaterThan(0);
    expect(stats.dropped.status).toBe(0);
    expect(stats.rows.status).toBe(300);
    expect(subject.outbox.pending(0, 1000)).toHaveLength(300);
  });
});
