import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Drainer, type Publisher } from '../../src/link/drain.js';
import { MemoryOutbox } from '../../src/store/memory-outbox.js';
import type { OutboxClass } from '../../src/store/outbox.js';
import { testLimits } from '../fixtures/outbox-setup.js';

/** A publisher whose PUBACKs the test hands out, one by one or all at once. */
class ManualPublisher implements Publisher {
  readonly sent: { topic: string; body: Record<string, unknown>; ack: () => void; fail: (err: Error) => void }[] = [];
  send(topic: string, payload: string, _options: unknown, done: (err?: Error) => void): void {
    // A PUBACK comes once: acknowledging an entry again (ackFirst counts from the start) changes nothing.
    let settled = false;
    const once = (err?: Error) => {
      if (!settled) done(err);
      settled = true;
    };
    this.sent.push({ topic, body: JSON.parse(payload) as Record<string, unknown>, ack: () => once(), fail: (err) => once(err) });
  }
  ackFirst(count: number): void {
    for (const entry of this.sent.slice(0, count)) entry.ack();
  }
}

/**
 * Lets acknowledged deletes flush (their batching timer is shorter than this) and the drainer refill; on fake
 * timers, so the test never waits for the clock and a loaded machine cannot reorder the two.
 */
async function settle(): Promise<void> {
  await vi.advanceTimersByTimeAsync(30);
}

function fill(outbox: MemoryOutbox, count: number, cls: OutboxClass = 'event'): void {
  for (let n = 0; n < count; n++) outbox.enqueue({ class: cls, topic: `t/${cls}`, payload: { n } });
}

describe('Drainer window and sessions (memory outbox, manual PUBACKs)', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('never has more than `window` publishes awaiting a PUBACK, and refills as they come', async () => {
    const outbox = new MemoryOutbox({ limits: testLimits() });
    fill(outbox, 500);
    const drainer = new Drainer(outbox, { window: 40 });
    const publisher = new ManualPublisher();
    drainer.onConnect(publisher);
    await settle();
    expect(publisher.sent).toHaveLength(40);
    expect(drainer.counters.inFlight).toBe(40);
    publisher.ackFirst(40);
    await settle();
    expect(publisher.sent).toHaveLength(80);
    expect(drainer.counters.inFlight).toBe(40);
    expect(outbox.stats().rows.event).toBe(460);
    for (let round = 0; round < 20 && outbox.stats().rows.event > 0; round++) {
      publisher.sent.forEach((entry) => entry.ack());
      await settle();
      expect(drainer.counters.inFlight).toBeLessThanOrEqual(40);
    }
    expect(outbox.stats().rows.event).toBe(0);
    expect(publisher.sent.map((s) => s.body.n)).toEqual(Array.from({ length: 500 }, (_, n) => n));
  });

  it('re-sends what was unacknowledged at a disconnect, with the same ids and in order', async () => {
    const outbox = new MemoryOutbox({ limits: testLimits() });
    fill(outbox, 30, 'event');
    fill(outbox, 30, 'result');
    const drainer = new Drainer(outbox, { window: 100 });
    const first = new ManualPublisher();
    drainer.onConnect(first);
    await settle();
    expect(first.sent).toHaveLength(60);
    first.ackFirst(25);
    await settle();
    drainer.onDisconnect();
    // A PUBACK that arrives after the disconnect is still true: that record is done.
    first.sent[25]!.ack();
    await settle();
    expect(outbox.stats().rows).toMatchObject({ event: 4, result: 30 });
    const second = new ManualPublisher();
    drainer.onConnect(second);
    await settle();
    expect(second.sent.map((s) => s.body.messageId)).toEqual(first.sent.slice(26).map((s) => s.body.messageId));
    expect(second.sent.every((s) => s.body.historical === true)).toBe(true);
    second.ackFirst(34);
    await settle();
    expect(outbox.stats().rows).toEqual({ status: 0, event: 0, result: 0 });
  });

  it('sends the newest status first as it is, then the backlog marked historical, then new records unmarked', async () => {
    const outbox = new MemoryOutbox({ limits: testLimits() });
    outbox.enqueue({ class: 'status', topic: 't/status', payload: { n: 1 } });
    outbox.enqueue({ class: 'event', topic: 't/event', payload: { n: 2 } });
    outbox.enqueue({ class: 'status', topic: 't/status', payload: { n: 3 } });
    outbox.enqueue({ class: 'result', topic: 't/result', payload: { n: 4 } });
    const drainer = new Drainer(outbox, { window: 10 });
    const publisher = new ManualPublisher();
    drainer.onConnect(publisher);
    await settle();
    expect(publisher.sent.map((s) => [s.body.n, s.body.historical])).toEqual([
      [3, undefined],
      [1, true],
      [2, true],
      [4, true],
    ]);
    outbox.enqueue({ class: 'event', topic: 't/event', payload: { n: 5 } });
    await settle();
    expect(publisher.sent.at(-1)!.body).toMatchObject({ n: 5 });
    expect(publisher.sent.at(-1)!.body).not.toHaveProperty('historical');
  });

  it('pauses after a failed publish and keeps the record for the next connect', async () => {
    const outbox = new MemoryOutbox({ limits: testLimits() });
    fill(outbox, 5);
    const drainer = new Drainer(outbox, { window: 2 });
    const publisher = new ManualPublisher();
    drainer.onConnect(publisher);
    await settle();
    publisher.sent[0]!.fail(new Error('connection closed'));
    publisher.sent[1]!.ack();
    await settle();
    expect(publisher.sent).toHaveLength(2);
    expect(outbox.stats().rows.event).toBe(4);
    const next = new ManualPublisher();
    drainer.onConnect(next);
    await settle();
    expect(next.sent.map((s) => s.body.n)).toEqual([0, 2]);
  });

  it('refuses a window below one', () => {
    const outbox = new MemoryOutbox({ limits: testLimits() });
    expect(() => new Drainer(outbox, { window: 0 })).toThrow(RangeError);
  });
});
