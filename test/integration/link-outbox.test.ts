import { describe, expect, it, onTestFinished } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { Drainer } from '../../src/link/drain.js';
import { openDatabase } from '../../src/store/db.js';
import { outboxLimitsFromConfig } from '../../src/store/outbox-limits.js';
import { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import { waitFor } from '../helpers/wait.js';
import { brokerBehindProxy } from '../helpers/fault-proxy.js';
import { brokerConfig, makeLink } from '../helpers/link.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';

const STATUS = 'fleetlet/v1/devices/dev-a/status';
/** The link with the real outbox and drainer on a real SQLite file, as the agent wires them. */
function device() {
  const { dir, cleanup } = tempDir();
  const opened = openDatabase({ stateDir: dir, fleetletVersion: 'test' });
  const config = ConfigSchema.parse({ broker: { url: 'mqtt://127.0.0.1:1', allowPlaintext: true } });
  const outbox = new SqliteOutbox(opened.db, { limits: outboxLimitsFromConfig(config.limits) });
  const drainer = new Drainer(outbox, { window: 50 });
  onTestFinished(() => {
    opened.db.close();
    cleanup();
  });
  return { outbox, drainer };
}

const enqueueStatus = (outbox: SqliteOutbox, seq: number) =>
  outbox.enqueue({ class: 'status', topic: STATUS, payload: { seq }, qos: 1 });
const queued = (outbox: SqliteOutbox) => outbox.pending(0, 10_000).length;

const seqsIn = (outbox: SqliteOutbox) => outbox.pending(0, 10_000).map((r) => (JSON.parse(r.body) as { seq: number }).seq);
const seenSeqs = (observer: Observer) => new Set(observer.messages.map((m) => (m.json as { seq: number }).seq));

describe('link and outbox', () => {
  it('delivers everything queued while the broker was away once it is back, marked historical, oldest first', async () => {
    const { up, proxy } = await brokerBehindProxy();
    const { outbox, drainer } = device();
    const { link } = makeLink(brokerConfig(proxy.url), { drain: drainer });
    link.start();
    onTestFinished(() => link.stop());
    await waitFor(() => link.state().connected, 'the link to connect');

    proxy.refuse(); // the device stays away until the fleet's observer is back on the restarted broker
    await up.stop();
    await waitFor(() => !link.state().connected, 'the link to see the broker go');
    for (let seq = 1; seq <= 300; seq++) enqueueStatus(outbox, seq);
    expect(queued(outbox)).toBe(300);

    await up.restart();
    const fleet = await Observer.connect(up.url, [STATUS]);
    onTestFinished(() => fleet.close());
    proxy.heal();
    await waitFor(() => seenSeqs(fleet).size === 300, 'all 300 queued statuses at the fleet', 30_000);
    await waitFor(() => queued(outbox) === 0, 'the outbox to empty after the PUBACKs');
    const seqs = fleet.messages.map((m) => (m.json as { seq: number; historical?: boolean }));
    // The newest status goes first as it is; the backlog follows oldest first, marked historical.
    expect(seqs[0]).toMatchObject({ seq: 300 });
    expect(seqs.slice(1).map((m) => m.seq)).toEqual(Array.from({ length: 299 }, (_, i) => i + 1));
    expect(seqs.slice(1).every((m) => m.historical === true)).toBe(true);

    enqueueStatus(outbox, 301);
    const live = await fleet.waitFor((m) => (m.json as { seq?: number })?.seq === 301, 'a status sent while connected');
    expect(live.json).not.toHaveProperty('historical');
  });

  it('settles every in-flight publish when a black-holed link is dropped, then delivers the rest', async () => {
    const { proxy } = await brokerBehindProxy();
    const { outbox, drainer } = device();
    const { link } = makeLink(brokerConfig(proxy.url), { drain: drainer });
    link.start();
    onTestFinished(() => link.stop());
    await waitFor(() => link.state().connected, 'the link to connect');
    proxy.blackhole();
    for (let seq = 1; seq <= 500; seq++) enqueueStatus(outbox, seq);
    await waitFor(() => drainer.counters.inFlight > 0, 'publishes waiting for a PUBACK that cannot come');
    await waitFor(() => !link.state().connected, 'the keepalive to drop the link', 30_000);
    // Nothing waits forever on the dead connection, so nothing is stuck in the window.
    await waitFor(() => drainer.counters.inFlight === 0, 'the lost publishes to fail');
    expect(queued(outbox)).toBe(500);
    proxy.heal();
    await waitFor(() => queued(outbox) === 0, 'everything delivered after the link healed', 30_000);
  });

  it('keeps unacknowledged records when the broker dies mid-drain, and sends them after the restart', async () => {
    const { up, proxy } = await brokerBehindProxy();
    const { outbox, drainer } = device();
    for (let seq = 1; seq <= 5000; seq++) enqueueStatus(outbox, seq);
    const { link } = makeLink(brokerConfig(proxy.url), { drain: drainer });
    link.start();
    onTestFinished(() => link.stop());
    await waitFor(() => drainer.counters.acknowledged > 0, 'the drain to begin');
    proxy.refuse();
    await up.stop();
    await waitFor(() => !link.state().connected, 'the link to see the broker go');
    // Every publish of the lost connection settles (acknowledged or failed), and stop() writes the last deletes.
    await waitFor(() => drainer.counters.inFlight === 0, 'the in-flight publishes to settle');
    drainer.stop();
    const left = seqsIn(outbox);
    expect(left.length).toBeGreaterThan(0);

    await up.restart();
    const fleet = await Observer.connect(up.url, [STATUS]);
    onTestFinished(() => fleet.close());
    proxy.heal();
    await waitFor(() => queued(outbox) === 0, 'the rest to be delivered', 30_000);
    const seen = seenSeqs(fleet);
    expect(left.filter((seq) => !seen.has(seq))).toEqual([]);
  });
});
