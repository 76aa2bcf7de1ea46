import { afterEach, describe, expect, it } from 'vitest';
import {
  OutboxRecordInvalidError,
  OutboxRecordTooLargeError,
  type NewOutboxRecord,
  type OutboxClass,
  type OutboxStore,
} from '../../src/store/outbox.js';
import { memoryOutbox, spooledSqliteOutbox, sqliteOutbox, testLimits, type OutboxFactory, type OutboxUnderTest } from '../fixtures/outbox-setup.js';

/** One contract, run against every Outbox implementation (as MQTT.js does for its stores). */
const IMPLEMENTATIONS: [string, OutboxFactory][] = [
  ['MemoryOutbox', memoryOutbox],
  ['SqliteOutbox', sqliteOutbox],
  ['SqliteOutbox with a status spool', spooledSqliteOutbox],
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function rec(cls: OutboxClass, n: number, extra: Partial<NewOutboxRecord> = {}): NewOutboxRecord {
  return { class: cls, topic: `t/devices/d1/${cls}`, payload: { n }, ...extra };
}

function bodies(outbox: OutboxStore): Record<string, unknown>[] {
  return outbox.pending(0, 1_000_000).map((r) => JSON.parse(r.body) as Record<string, unknown>);
}

describe.each(IMPLEMENTATIONS)('Outbox contract: %s', (_name, factory) => {
  let subject: OutboxUnderTest | undefined;
  const make = (limits = testLimits()) => {
    subject = factory(limits);
    return subject.outbox;
  };
  afterEach(() => {
    subject?.close();
    subject = undefined;
  });

  it('returns each record with a fresh id, defaults, and a growing seq', () => {
    const outbox = make();
    const before = Date.now();
    const a = outbox.enqueue(rec('event', 1));
    const b = outbox.enqueue(rec('status', 2, { qos: 0, retain: true }));
    expect(a).toMatchObject({ class: 'event', topic: 't/devices/d1/event', qos: 1, retain: false });
    expect(a.payload).toEqual({ n: 1, messageId: a.messageId });
    expect(a.messageId).toMatch(UUID);
    expect(b.messageId).toMatch(UUID);
    expect(b.messageId).not.toBe(a.messageId);
    expect(b.seq).toBeGreaterThan(a.seq);
    expect(a.createdAt).toBeGreaterThanOrEqual(before);
    expect(b).toMatchObject({ qos: 0, retain: true });
    expect(outbox.lastSeq()).toBe(b.seq);
  });

  it('lists pending records oldest first, with the wire body carrying the messageId', () => {
    const outbox = make();
    const made = [rec('status', 1), rec('event', 2), rec('result', 3), rec('status', 4)].map((r) => outbox.enqueue(r));
    const pending = outbox.pending(0, 10);
    expect(pending.map((r) => r.seq)).toEqual(made.map((r) => r.seq));
    expect(pending.map((r) => r.messageId)).toEqual(made.map((r) => r.messageId));
    expect(pending.map((r) => JSON.parse(r.body))).toEqual(made.map((r) => ({ n: r.payload.n, messageId: r.messageId })));
    expect(outbox.pending(made[1]!.seq, 2).map((r) => r.seq)).toEqual([made[2]!.seq, made[3]!.seq]);
    expect(outbox.pending(made[3]!.seq, 10)).toEqual([]);
  });

  it('gives the drain its records with historical: true added exactly up to the given seq', () => {
    const outbox = make();
    // Multi-byte text and characters JSON escapes: the splice must count characters, not bytes, and keep them whole.
    const payloads = [{ n: 1, text: 'Grüße, 温度 🌡️' }, { n: 2, text: 'quote " backslash \\ }' }, { n: 3, nested: { a: [1, { b: '}' }] } }];
    const made = payloads.map((payload, i) => outbox.enqueue({ class: i === 1 ? 'event' : 'status', topic: 't/devices/d1/x', payload }));
    const out = outbox.outgoing(0, 10, made[1]!.seq);
    expect(out.map((r) => r.seq)).toEqual(made.map((r) => r.seq));
    for (const [i, record] of out.entries()) {
      const expected = { ...payloads[i], messageId: made[i]!.messageId, ...(i <= 1 ? { historical: true } : {}) };
      expect(JSON.parse(record.payload)).toEqual(expected);
      expect(record).toMatchObject({ topic: 't/devices/d1/x', qos: 1, retain: false });
    }
    // Exactly the stored body, so a re-send is the same message.
    const pending = outbox.pending(0, 10);
    expect(out[2]!.payload).toBe(pending[2]!.body);
    expect(out[0]!.payload).toBe(`${pending[0]!.body.slice(0, -1)},"historical":true}`);
    expect(outbox.outgoing(made[0]!.seq, 1, 0).map((r) => r.seq)).toEqual([made[1]!.seq]);
  });

  it('gives a unique id to every record', () => {
    const outbox = make();
    const ids = outbox.enqueueMany(Array.from({ length: 2000 }, (_, n) => rec('status', n))).map((r) => r.messageId);
    expect(new Set(ids).size).toBe(2000);
  });

  it('finds the newest record of a class', () => {
    const outbox = make();
    expect(outbox.latest('status')).toBeUndefined();
    outbox.enqueue(rec('status', 1));
    const newest = outbox.enqueue(rec('status', 2));
    outbox.enqueue(rec('event', 3));
    expect(outbox.latest('status')?.seq).toBe(newest.seq);
    expect(outbox.latest('result')).toBeUndefined();
  });

  it('deletes only acknowledged records and ignores unknown ones', () => {
    const outbox = make();
    const [a, b, c] = outbox.enqueueMany([rec('status', 1), rec('event', 2), rec('result', 3)]);
    expect(outbox.acknowledge([b!.seq, 999_999])).toBe(1);
    expect(outbox.acknowledge([b!.seq])).toBe(0);
    expect(outbox.pending(0, 10).map((r) => r.seq)).toEqual([a!.seq, c!.seq]);
    expect(outbox.stats().rows).toEqual({ status: 1, event: 0, result: 1 });
    expect(outbox.stats().dropped).toEqual({ status: 0, event: 0, result: 0 });
  });

  it('stores a batch all or nothing', () => {
    const outbox = make();
    outbox.enqueue(rec('event', 0));
    const bad = { class: 'event', topic: 'a/+/b', payload: {} } as NewOutboxRecord;
    expect(() => outbox.enqueueMany([rec('event', 1), bad, rec('event', 2)])).toThrow(OutboxRecordInvalidError);
    expect(bodies(outbox).map((b) => b.n)).toEqual([0]);
    expect(outbox.stats().rows.event).toBe(1);
    const next = outbox.enqueue(rec('event', 3));
    expect(outbox.pending(0, 10).map((r) => r.seq)).toEqual([1, next.seq]);
  });

  it('refuses malformed records', () => {
    const outbox = make();
    const cases: unknown[] = [
      { class: 'nope', topic: 't', payload: {} },
      { class: 'event', topic: '', payload: {} },
      { class: 'event', topic: 'a/#', payload: {} },
      { class: 'event', topic: 'x'.repeat(2000), payload: {} },
      { class: 'event', topic: 't', payload: [] },
      { class: 'event', topic: 't', payload: null },
      { class: 'event', topic: 't', payload: {}, qos: 2 },
      { class: 'event', topic: 't', payload: { big: 10n } },
    ];
    for (const input of cases) expect(() => outbox.enqueue(input as NewOutboxRecord)).toThrow(OutboxRecordInvalidError);
    expect(outbox.pending(0, 10)).toEqual([]);
  });

  it('refuses a record larger than the largest message', () => {
    const outbox = make(testLimits({ maxRecordBytes: 2048 }));
    expect(() => outbox.enqueue(rec('event', 1, { payload: { blob: 'x'.repeat(3000) } }))).toThrow(OutboxRecordTooLargeError);
    expect(outbox.stats().rows.event).toBe(0);
  });

  it('keeps a class within its row budget by dropping its oldest, and counts the drops', () => {
    const outbox = make(testLimits({ budgets: { status: { maxRows: 10, maxBytes: 1 << 20 } } }));
    outbox.enqueue(rec('event', -1));
    for (let n = 0; n < 25; n++) outbox.enqueue(rec('status', n, { payload: { n } }));
    const stats = outbox.stats();
    expect(stats.rows).toEqual({ status: 10, event: 1, result: 0 });
    expect(stats.dropped).toEqual({ status: 15, event: 0, result: 0 });
    const statuses = bodies(outbox).filter((b) => b.n !== -1);
    expect(statuses.map((b) => b.n)).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
    // Each status carries the drops counted before it was stored: status n saw n - 10 drops.
    expect(statuses.map((b) => (b.outboxDrops as { status: number }).status)).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
  });

  it('reports drops in every later status as counters, so losing a status loses no count', () => {
    const outbox = make(testLimits({ budgets: { event: { maxRows: 10, maxBytes: 1 << 20 } } }));
    const first = outbox.enqueue(rec('status', 99));
    expect(first.payload).not.toHaveProperty('outboxDrops');
    for (let n = 0; n < 13; n++) outbox.enqueue(rec('event', n));
    expect(outbox.stats().dropped.event).toBe(3);
    const status = outbox.enqueue(rec('status', 100));
    expect(status.payload.outboxDrops).toEqual({ status: 0, event: 3, result: 0, diskFull: 0 });
    expect(JSON.parse(outbox.latest('status')!.body).outboxDrops).toEqual({ status: 0, event: 3, result: 0, diskFull: 0 });
    outbox.enqueue(rec('event', 13));
    const next = outbox.enqueue(rec('status', 101));
    expect(next.payload.outboxDrops).toEqual({ status: 0, event: 4, result: 0, diskFull: 0 });
    expect(outbox.stats().dropped).toEqual({ status: 0, event: 4, result: 0 });
  });

  it('keeps a class within its byte budget', () => {
    const outbox = make(testLimits({ budgets: { result: { maxRows: 1000, maxBytes: 4096 } } }));
    const payload = { blob: 'r'.repeat(900) };
    for (let n = 0; n < 20; n++) outbox.enqueue(rec('result', n, { payload: { ...payload, n } }));
    const stats = outbox.stats();
    expect(stats.bytes.result).toBeLessThanOrEqual(4096);
    expect(stats.rows.result).toBe(4);
    expect(stats.dropped.result).toBe(16);
    expect(bodies(outbox).map((b) => b.n)).toEqual([16, 17, 18, 19]);
  });

  it('over the total budget, sheds the cheapest class first: status, then events, then results', () => {
    const blob = 'x'.repeat(1000);
    const outbox = make(testLimits({ maxTotalBytes: 12_000 }));
    for (let n = 0; n < 5; n++) outbox.enqueue(rec('status', n, { payload: { blob, n } }));
    for (let n = 0; n < 3; n++) outbox.enqueue(rec('result', 10 + n, { payload: { blob, n: 10 + n } }));
    for (let n = 0; n < 6; n++) outbox.enqueue(rec('event', 20 + n, { payload: { blob, n: 20 + n } }));
    // 14 records of ~1.05 kB each against 12 kB: the three oldest to go are all status.
    let stats = outbox.stats();
    expect(stats.dropped).toEqual({ status: 3, event: 0, result: 0 });
    expect(stats.rows).toEqual({ status: 2, event: 6, result: 3 });
    for (let n = 0; n < 4; n++) outbox.enqueue(rec('event', 30 + n, { payload: { blob, n: 30 + n } }));
    stats = outbox.stats();
    expect(stats.rows.status).toBe(0);
    expect(stats.rows.result).toBe(3);
    expect(stats.dropped.event).toBe(2);
    const left = bodies(outbox).map((b) => b.n);
    expect(left).toEqual([10, 11, 12, 22, 23, 24, 25, 30, 31, 32, 33]);
  });

  it('preserves order within each class across mixed enqueues and acknowledgements', () => {
    const outbox = make(testLimits({ budgets: { status: { maxRows: 50, maxBytes: 1 << 20 } } }));
    const classes: OutboxClass[] = ['status', 'event', 'result'];
    for (let n = 0; n < 300; n++) {
      outbox.enqueue(rec(classes[n % 3]!, n));
      if (n % 7 === 0) outbox.acknowledge(outbox.pending(0, 2).map((r) => r.seq));
    }
    const pending = outbox.pending(0, 1000);
    for (const cls of classes) {
      const ns = pending.filter((r) => r.class === cls).map((r) => (JSON.parse(r.body) as { n: number }).n);
      expect(ns).toEqual([...ns].sort((x, y) => x - y));
    }
    expect(pending.map((r) => r.seq)).toEqual([...pending.map((r) => r.seq)].sort((x, y) => x - y));
  });

  it('notifies listeners once per burst of enqueues, until they unsubscribe', async () => {
    const outbox = make();
    let calls = 0;
    const unsubscribe = outbox.onEnqueue(() => calls++);
    for (let n = 0; n < 100; n++) outbox.enqueue(rec('status', n));
    expect(calls).toBe(0);
    await Promise.resolve();
    expect(calls).toBe(1);
    outbox.enqueueMany([rec('event', 1), rec('event', 2)]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toBe(2);
    unsubscribe();
    outbox.enqueue(rec('event', 3));
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toBe(2);
  });
});
