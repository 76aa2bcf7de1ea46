import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Drainer, type Publisher } from '../../src/link/drain.js';
import type { NewOutboxRecord, OutboxClass, OutboxStore } from '../../src/store/outbox.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { ArrivalRecorder, connectDrainingClient } from '../fixtures/outbox-mqtt.js';
import { waitFor } from '../helpers/wait.js';
import { sqliteOutbox, testLimits, type OutboxUnderTest } from '../fixtures/outbox-setup.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';

const ROOT = 'drain-test/devices/d1';

function rec(cls: OutboxClass, n: number): NewOutboxRecord {
  const channel = cls === 'event' ? 'events' : cls === 'result' ? 'results' : 'status';
  return { class: cls, topic: `${ROOT}/${channel}`, payload: { n } };
}

/** Counts publish attempts per messageId and which seqs were acknowledged, around a real publisher. */
function counting(attempts: Map<string, number>): (publisher: Publisher) => Publisher {
  return (publisher) => ({
    send: (topic, payload, options, done) => {
      const id = (JSON.parse(payload) as { messageId: string }).messageId;
      attempts.set(id, (attempts.get(id) ?? 0) + 1);
      publisher.send(topic, payload, options, done);
    },
  });
}

/**
 * Counts every publish written to the socket, by messageId: the drain's own, and those MQTT.js sends again from its
 * store when this test client (one client that reconnects, unlike the agent's link) comes back. Either may resend
 * what was in flight, depending on which runs first after the reconnect.
 */
function countWrites(client: MqttClient, attempts: Map<string, number>): void {
  client.on('packetsend', (packet) => {
    if (packet.cmd !== 'publish') return;
    const id = (JSON.parse(String(packet.payload)) as { messageId: string }).messageId;
    attempts.set(id, (attempts.get(id) ?? 0) + 1);
  });
}

describe.skipIf(!mosquittoAvailable())('drain to a real mosquitto', () => {
  let broker: TestBroker;
  let subject: OutboxUnderTest;
  let outbox: OutboxStore;
  const closers: (() => Promise<void> | void)[] = [];

  beforeAll(async () => {
    broker = await startMosquitto({ globalLines: ['max_queued_messages 0'] });
  });
  afterAll(async () => {
    await broker.close();
  });
  const setup = () => {
    subject = sqliteOutbox(testLimits());
    outbox = subject.outbox;
  };
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    subject.close();
  });
  const device = (drainer: Drainer, url: string, options: Parameters<typeof connectDrainingClient>[2] = {}): MqttClient => {
    const client = connectDrainingClient(url, drainer, options);
    closers.push(async () => {
      drainer.stop();
      await client.endAsync(true);
    });
    return client;
  };
  const recorder = async () => {
    const r = await ArrivalRecorder.start(broker.url, `${ROOT}/#`);
    closers.push(() => r.close());
    return r;
  };

  it('sends the newest status, then the backlog oldest first as historical, then live records; deletes after PUBACK', async () => {
    setup();
    const backlog = [rec('status', 1), rec('event', 2), rec('status', 3), rec('result', 4), rec('status', 5)].map((r) =>
      outbox.enqueue(r),
    );
    const arrivals = await recorder();
    const drainer = new Drainer(outbox, { window: 100 });
    device(drainer, broker.url);
    await waitFor(() => arrivals.arrivals.length >= 5, 'the backlog', 10_000);
    expect(arrivals.arrivals.map((a) => [a.body.n, a.body.historical ?? false])).toEqual([
      [5, false],
      [1, true],
      [2, true],
      [3, true],
      [4, true],
    ]);
    expect(arrivals.arrivals.map((a) => a.body.messageId)).toEqual([4, 0, 1, 2, 3].map((i) => backlog[i]!.messageId));
    expect(arrivals.arrivals[1]!.topic).toBe(`${ROOT}/status`);
    await waitFor(() => outbox.pending(0, 10).length === 0, 'the outbox to empty', 10_000);

    const live = outbox.enqueue(rec('event', 6));
    await waitFor(() => arrivals.arrivals.length >= 6, 'a live record', 5_000);
    expect(arrivals.arrivals[5]!.body).toEqual({ n: 6, messageId: live.messageId });
    await waitFor(() => outbox.stats().rows.event === 0, 'the live record to be deleted', 5_000);
  });

  it('queues while the broker is down at boot and drains everything once it is up', async () => {
    setup();
    await broker.stop();
    const drainer = new Drainer(outbox, { window: 50 });
    // The subscriber can only come up with the broker; the device starts draining once it listens.
    const subscriber: { current?: ArrivalRecorder } = {};
    device(drainer, broker.url, { beforeDrain: () => waitFor(() => subscriber.current?.ready() ?? false, 'subscriber', 20_000) });
    const made = outbox.enqueueMany(Array.from({ length: 300 }, (_, n) => rec(n % 2 ? 'event' : 'status', n)));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(outbox.stats().rows.event + outbox.stats().rows.status).toBe(300);
    await broker.restart();
    const arrivals = await recorder();
    subscriber.current = arrivals;
    await waitFor(() => outbox.pending(0, 1).length === 0, 'the outbox to empty', 20_000);
    await waitFor(() => arrivals.arrivals.length >= 300, 'all arrivals', 10_000);
    expect(arrivals.ids()).toEqual(new Set(made.map((r) => r.messageId)));
  });

  it('yields to the rest of the agent while draining a large backlog: no timer is late by a second', { timeout: 120_000 }, async () => {
    setup();
    for (let i = 0; i < 50_000; i += 1000) outbox.enqueueMany(Array.from({ length: 1000 }, (_, n) => rec('status', i + n)));
    const drainer = new Drainer(outbox, { window: 500 });
    // A sampler's tick: every 100 ms, how late it fired while the backlog went out.
    let lateMs = 0;
    let expected = performance.now() + 100;
    const tick = setInterval(() => {
      lateMs = Math.max(lateMs, performance.now() - expected);
      expected = performance.now() + 100;
    }, 100);
    try {
      device(drainer, broker.url);
      await waitFor(() => outbox.pending(0, 1).length === 0, 'the backlog to drain', 100_000);
    } finally {
      clearInterval(tick);
    }
    expect(drainer.counters.acknowledged).toBeGreaterThanOrEqual(50_000);
    expect(lateMs).toBeLessThan(1000);
  });

  it('sends a record enqueued during a large drain ahead of the rest of the backlog, within a second', { timeout: 120_000 }, async () => {
    setup();
    for (let i = 0; i < 50_000; i += 1000) outbox.enqueueMany(Array.from({ length: 1000 }, (_, n) => rec('status', i + n)));
    const arrivals = await recorder();
    const drainer = new Drainer(outbox, { window: 500 });
    device(drainer, broker.url);
    await waitFor(() => drainer.counters.acknowledged >= 2000, 'the drain to be under way', 60_000);
    // A command's result, as the router enqueues it while the backlog goes out.
    const enqueuedAt = performance.now();
    const result = outbox.enqueue(rec('result', -1));
    await waitFor(() => arrivals.arrivals.some((a) => a.body.messageId === result.messageId), 'the result to arrive', 60_000);
    const tookMs = performance.now() - enqueuedAt;
    const backlogLeft = outbox.stats().rows.status;
    await waitFor(() => outbox.pending(0, 1).length === 0, 'the backlog to drain', 100_000);
    expect(arrivals.arrivals.find((a) => a.body.messageId === result.messageId)?.body.historical).toBeUndefined();
    expect(backlogLeft).toBeGreaterThan(20_000);
    expect(tookMs).toBeLessThan(1000);
  });

  it('keeps unacknowledged records through a broker restart and re-sends them with the same ids', async () => {
    setup();
    const made = outbox.enqueueMany(Array.from({ length: 20_000 }, (_, n) => rec(n % 3 ? 'status' : 'event', n)));
    const byId = new Map(made.map((r) => [r.messageId, r]));
    const attempts = new Map<string, number>();
    const drainer = new Drainer(outbox, { window: 200 });
    const arrivals = await recorder();
    device(drainer, broker.url, {
      wrap: counting(attempts),
      beforeDrain: () => waitFor(() => arrivals.ready(), 'subscriber', 20_000),
    });
    await waitFor(() => drainer.counters.acknowledged >= 1000, 'some acknowledgements', 20_000);
    await broker.restart();
    const left = outbox.stats().rows;
    expect(left.status + left.event).toBeGreaterThan(0);
    await waitFor(() => outbox.pending(0, 1).length === 0, 'the outbox to empty after the restart', 30_000);
    // Every record went out (and was acknowledged: the outbox is empty). Whether any was still unacknowledged when
    // mosquitto stopped depends on its shutdown; the black-holed link below makes sure some were.
    expect([...attempts.keys()].every((id) => byId.has(id))).toBe(true);
    expect(attempts.size).toBe(made.length);
    // Whatever arrived is a record we made, body and id together (a duplicate carries the same id and content).
    for (const arrival of arrivals.arrivals) {
      expect(arrival.body.n).toBe(byId.get(arrival.body.messageId)?.payload.n);
    }
  });

  it('survives a black-holed link: nothing is deleted without a PUBACK, and all arrives after it heals', async () => {
    setup();
    const proxy = await FaultProxy.start(broker.port);
    closers.push(() => proxy.close());
    const arrivals = await recorder();
    const attempts = new Map<string, number>();
    const drainer = new Drainer(outbox, { window: 100 });
    const client = device(drainer, proxy.url, { keepalive: 1 });
    countWrites(client, attempts);
    const made = outbox.enqueueMany(Array.from({ length: 20_000 }, (_, n) => rec(n % 2 ? 'status' : 'result', n)));
    await waitFor(() => drainer.counters.acknowledged >= 500, 'some acknowledgements', 20_000);
    proxy.blackhole();
    // Records keep coming while the link is dead.
    for (let n = 0; n < 50; n++) made.push(outbox.enqueue(rec('event', 10_000 + n)));
    await waitFor(() => !client.connected, 'the client to notice the dead link', 15_000);
    const stuck = outbox.stats().rows;
    expect(stuck.event).toBe(50);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(outbox.stats().rows).toEqual(stuck);
    proxy.heal();
    await waitFor(() => outbox.pending(0, 1).length === 0, 'the outbox to empty after healing', 30_000);
    await waitFor(() => arrivals.ids().size >= made.length, 'every record at the subscriber', 10_000);
    expect(arrivals.ids()).toEqual(new Set(made.map((r) => r.messageId)));
    const byId = new Map(made.map((r) => [r.messageId, r.payload.n]));
    for (const arrival of arrivals.arrivals) expect(arrival.body.n).toBe(byId.get(arrival.body.messageId));
    // What was in flight when the link died never got its PUBACK there, so it went out again, with the same id.
    expect([...attempts.values()].some((count) => count > 1)).toBe(true);
    expect(attempts.size).toBe(made.length);
    // Per class, first arrivals keep the order of enqueueing (except the newest status, sent first by design).
    for (const channel of ['status', 'results', 'events']) {
      const seen = new Set<string>();
      const order: number[] = [];
      for (const a of arrivals.arrivals) {
        if (!a.topic.endsWith(`/${channel}`) || seen.has(a.body.messageId)) continue;
        seen.add(a.body.messageId);
        if (channel !== 'status' || a.body.historical === true) order.push(a.body.n as number);
      }
      expect(order.length).toBeGreaterThan(40);
      expect(order).toEqual([...order].sort((x, y) => x - y));
    }
  });
});
