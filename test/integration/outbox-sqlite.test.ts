import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DATABASE_FILE } from '../../src/store/db.js';
import { EventLog } from '../../src/store/event-log.js';
import { rec, sqliteOutbox, testLimits, type OutboxUnderTest } from '../fixtures/outbox-setup.js';

/** The defaults of limits.eventLog. */
const EVENT_LOG_LIMITS = { maxRows: 2000, maxBytes: 2 * 1024 * 1024 };


describe('SqliteOutbox on a real database file', () => {
  let subject: OutboxUnderTest | undefined;
  afterEach(() => {
    subject?.close();
    subject = undefined;
  });

  it('keeps records, ids, totals and drop counters across a reopen, and seq keeps growing', () => {
    subject = sqliteOutbox(testLimits({ budgets: { event: { maxRows: 10, maxBytes: 1 << 20 } } }));
    const made = subject.outbox.enqueueMany(Array.from({ length: 12 }, (_, n) => rec('event', n)));
    subject.outbox.enqueue(rec('status', 99));
    const before = subject.outbox.stats();
    subject = subject.reopen!();
    const outbox = subject.outbox;
    expect(outbox.stats()).toEqual({ ...before, diskFullAt: undefined });
    expect(outbox.pending(0, 100).filter((r) => r.class === 'event').map((r) => r.messageId)).toEqual(
      made.slice(2).map((r) => r.messageId),
    );
    expect(outbox.stats().dropped.event).toBe(2);
    const next = outbox.enqueue(rec('result', 1));
    expect(next.seq).toBe(14);
    expect(next.payload).not.toHaveProperty('outboxDrops');
    expect(outbox.enqueue(rec('status', 100)).payload.outboxDrops).toMatchObject({ event: 2 });
  });

  it('restores the connection default (NORMAL) after a durable event commit', () => {
    subject = sqliteOutbox(testLimits());
    subject.outbox.enqueue(rec('event', 1));
    expect(subject.db!.pragma('synchronous', { simple: true })).toBe(1);
  });

  it('enqueues inside a caller\'s transaction, atomically with the caller\'s own writes', () => {
    subject = sqliteOutbox(testLimits());
    const db = subject.db!;
    db.exec('CREATE TABLE caller_state (v INTEGER NOT NULL)');
    db.transaction(() => {
      db.prepare('INSERT INTO caller_state (v) VALUES (1)').run();
      subject!.outbox.enqueue(rec('result', 1));
    })();
    expect(subject.outbox.stats().rows.result).toBe(1);
    expect(() =>
      db.transaction(() => {
        subject!.outbox.enqueue(rec('event', 2));
        throw new Error('caller fails after enqueueing');
      })(),
    ).toThrow('caller fails');
    // The caller's rollback took the event with it; the outbox's totals must not count it.
    expect(subject.outbox.stats().rows).toEqual({ status: 0, event: 0, result: 1 });
    expect(subject.outbox.pending(0, 10).map((r) => r.class)).toEqual(['result']);
    expect(subject.outbox.enqueue(rec('event', 3)).seq).toBeGreaterThan(1);
    expect(subject.outbox.stats().rows).toEqual({ status: 0, event: 1, result: 1 });
  });

  it('keeps the database file bounded however long the outage', () => {
    subject = sqliteOutbox(
      testLimits({
        budgets: { status: { maxRows: 2000, maxBytes: 512 * 1024 }, event: { maxRows: 500, maxBytes: 256 * 1024 } },
        maxTotalBytes: 700 * 1024,
      }),
    );
    const file = join(subject.dir!, DATABASE_FILE);
    const sizes: number[] = [];
    for (let round = 0; round < 10; round++) {
      subject.outbox.enqueueMany(Array.from({ length: 2000 }, (_, n) => rec(n % 10 === 0 ? 'event' : 'status', n, 300)));
      subject.db!.pragma('wal_checkpoint(TRUNCATE)');
      sizes.push(statSync(file).size);
    }
    const stats = subject.outbox.stats();
    expect(stats.bytes.status + stats.bytes.event).toBeLessThanOrEqual(700 * 1024);
    expect(stats.dropped.status + stats.dropped.event).toBeGreaterThan(15_000);
    // Freed pages are reused: after the first rounds the file stops growing.
    expect(Math.max(...sizes)).toBeLessThan(2 * 1024 * 1024);
    expect(sizes.at(-1)).toBeLessThanOrEqual(sizes[3]! * 1.1);
    expect(subject.db!.pragma('integrity_check', { simple: true })).toBe('ok');
  });

  it('on a full disk sheds status, keeps events, never throws, and records the condition', () => {
    subject = sqliteOutbox(testLimits());
    // The outbox records conditions in the local event log, which lives in the same (full) database.
    subject = subject.reopen!({ conditions: { record: (kind, detail) => new EventLog(subject!.db!, EVENT_LOG_LIMITS).record(kind, detail) } });
    const outbox = subject.outbox;
    // The database may not grow past this many pages: what a full filesystem looks like to SQLite.
    const pages = Number(subject.db!.pragma('page_count', { simple: true }));
    subject.db!.pragma(`max_page_count = ${pages + 60}`);

    const events: string[] = [];
    let diskFullSeen = 0;
    for (let n = 0; n < 3000; n++) {
      const record = outbox.enqueue(rec('status', n, 400));
      expect(record.seq).toBeGreaterThan(0);
      if (n % 50 === 0) events.push(outbox.enqueue(rec('event', n, 400)).messageId);
      diskFullSeen = outbox.stats().diskFull;
    }
    const stats = outbox.stats();
    expect(diskFullSeen).toBeGreaterThan(0);
    expect(stats.diskFullAt).toBeDefined();
    expect(stats.dropped.status).toBeGreaterThan(1000);
    expect(stats.dropped.event).toBe(0);
    expect(stats.rows.event).toBe(events.length);
    expect(outbox.pending(0, 100_000).filter((r) => r.class === 'event').map((r) => r.messageId)).toEqual(events);
    const newest = JSON.parse(outbox.latest('status')!.body) as { n: number; outboxDrops: { diskFull: number; status: number } };
    expect(newest.n).toBe(2999);
    expect(newest.outboxDrops.diskFull).toBeGreaterThan(0);
    expect(new EventLog(subject.db!, EVENT_LOG_LIMITS).recent(100).map((e) => e.kind)).toContain('outbox.disk_full');
    expect(subject.db!.pragma('integrity_check', { simple: true })).toBe('ok');
  });

  it('on a full disk with no status left, sheds the oldest events for new ones, and drops a status that has no room', () => {
    subject = sqliteOutbox(testLimits());
    const pages = Number(subject.db!.pragma('page_count', { simple: true }));
    subject.db!.pragma(`max_page_count = ${pages + 20}`);
    const outbox = subject.outbox;
    const made: number[] = [];
    for (let n = 0; n < 600; n++) made.push(outbox.enqueue(rec('event', n, 400)).seq);
    expect(made.every((seq) => seq > 0)).toBe(true);
    const stats = outbox.stats();
    expect(stats.dropped.event).toBeGreaterThan(0);
    const left = outbox.pending(0, 10_000).map((r) => (JSON.parse(r.body) as { n: number }).n);
    expect(left.at(-1)).toBe(599);
    expect(left).toEqual([...left].sort((a, b) => a - b));
    // Fill the last free bytes with events, then a status cannot be stored without shedding events: it is dropped.
    for (let n = 0; n < 50; n++) outbox.enqueue(rec('event', 1000 + n, 400));
    const droppedBefore = outbox.stats().dropped.status;
    let unstored = 0;
    for (let n = 0; n < 20; n++) if (outbox.enqueue(rec('status', n, 3000)).seq === 0) unstored++;
    expect(unstored).toBeGreaterThan(0);
    expect(outbox.stats().dropped.status - droppedBefore).toBeGreaterThanOrEqual(unstored);
    expect(outbox.stats().rows.event).toBeGreaterThan(0);
    expect(subject.db!.pragma('integrity_check', { simple: true })).toBe('ok');
  });
});
