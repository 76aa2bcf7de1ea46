import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ConfigError } from '../../src/lib/errors.js';
import type { MqttLink, LinkDrain } from '../../src/link/link.js';
import type { Publisher } from '../../src/link/drain.js';
import { INVENTORY_EXAMPLE } from '../../src/protocol/inventory.js';
import { openDatabase } from '../../src/store/db.js';
import { nextBootSequence } from '../../src/link/boot-sequence.js';
import { waitFor } from '../helpers/wait.js';
import { brokerBehindProxy } from '../helpers/fault-proxy.js';
import { announced, brokerConfig, makeLink } from '../helpers/link.js';
import { startTestBroker, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const PRESENCE = 'fleetlet/v1/devices/dev-a/presence';
const INVENTORY = 'fleetlet/v1/devices/dev-a/inventory';
async function broker(port?: number): Promise<TestBroker> {
  const started = await startTestBroker(port ? { port } : {});
  onTestFinished(() => started.close());
  return started;
}

async function observe(url: string, topics = ['fleetlet/v1/#']): Promise<Observer> {
  const observer = await Observer.connect(url, topics);
  onTestFinished(() => observer.close());
  return observer;
}

function started(link: MqttLink): MqttLink {
  link.start();
  onTestFinished(() => link.stop());
  return link;
}

const connected = (link: MqttLink) => waitFor(() => link.state().connected, 'the link to connect', 20_000);
const disconnected = (link: MqttLink) => waitFor(() => !link.state().connected, 'the link to notice the loss', 30_000);

describe('link: offline first', () => {
  it('starts without a broker, keeps retrying with backoff, and connects once the broker appears', async () => {
    const port = await freePort();
    const made = makeLink(brokerConfig(`mqtt://127.0.0.1:${port}`), { inventory: () => INVENTORY_EXAMPLE });
    const { link } = made;
    started(link);
    expect(link.state().connected).toBe(false);
    await waitFor(() => link.state().reconnectAttempts >= 3, 'several refused attempts');
    expect(link.state().lastError).toMatch(/ECONNREFUSED/);

    const up = await broker(port);
    await announced(made);
    expect(await Observer.retained(up.url, PRESENCE)).toMatchObject({ state: 'online', bootSequence: 7, schemaVersion: 1 });
    expect(await Observer.retained(up.url, INVENTORY)).toEqual(INVENTORY_EXAMPLE);

    // One warning per outage, not one per attempt.
    const warnings = () => made.logs().filter((line) => line.includes('ECONNREFUSED') && line.includes('"level":"warn"'));
    expect(warnings()).toHaveLength(1);
    await up.stop();
    const attempts = link.state().reconnectAttempts;
    await waitFor(() => link.state().reconnectAttempts >= attempts + 3, 'several attempts in the second outage');
    expect(warnings()).toHaveLength(2);
  });

  it('publishes a fresh birth after the broker restarts, and resubscribes to the command topics', async () => {
    const up = await broker();
    const made = makeLink(brokerConfig(up.url));
    const { link } = made;
    const commands: string[] = [];
    link.onCommand((topic, payload) => commands.push(`${topic} ${payload.toString()}`));
    started(link);
    await announced(made);

    await up.restart();
    await announced(made, 2);
    // The restarted broker kept nothing: the presence there now is the new birth.
    expect(await Observer.retained(up.url, PRESENCE)).toMatchObject({ state: 'online', bootSequence: 7 });
    const fleet = await observe(up.url, []);

    await fleet.client.publishAsync('fleetlet/v1/devices/dev-a/commands', 'after-restart', { qos: 1 });
    await fleet.client.publishAsync('fleetlet/v1/groups/canary/commands', 'group', { qos: 1 });
    await waitFor(() => commands.length === 2, 'both commands after the restart');
    expect(commands.sort()).toEqual([
      'fleetlet/v1/devices/dev-a/commands after-restart',
      'fleetlet/v1/groups/canary/commands group',
    ]);
  });
});

describe('link: presence', () => {
  it('keeps the retained presence right through connect, lost connection, reconnect and clean stop', async () => {
    const { up, proxy } = await brokerBehindProxy();
    const fleet = await observe(up.url, [PRESENCE]);
    const { link } = makeLink(brokerConfig(proxy.url));
    started(link);

    await fleet.waitFor((m) => (m.json as { state?: string })?.state === 'online', 'the birth');
    expect(await Observer.retained(up.url, PRESENCE)).toMatchObject({ state: 'online', bootSequence: 7 });

    proxy.cut(); // the broker sees the socket close without DISCONNECT: it publishes the will
    await fleet.waitFor((m) => (m.json as { state?: string })?.state === 'offline', 'the last will');
    expect(fleet.messages.find((m) => (m.json as { state?: string })?.state === 'offline')?.json).toMatchObject({
      state: 'offline',
      reason: 'connection-lost',
      bootSequence: 7,
    });

    await waitFor(() => fleet.messages.filter((m) => (m.json as { state?: string })?.state === 'online').length === 2, 'a second birth');
    expect(await Observer.retained(up.url, PRESENCE)).toMatchObject({ state: 'online', bootSequence: 7 });

    await link.stop();
    expect(await Observer.retained(up.url, PRESENCE)).toMatchObject({ state: 'offline', reason: 'stopped', bootSequence: 7 });
    // A clean DISCONNECT discards the will: no extra connection-lost message after the stop.
    const wills = fleet.messages.filter((m) => (m.json as { reason?: string })?.reason === 'connection-lost');
    expect(wills).toHaveLength(1);
  });

  it('stops promptly when the broker is unreachable', async () => {
    const { link } = makeLink(brokerConfig(`mqtt://127.0.0.1:${await freePort()}`), { stopTimeoutMs: 500 });
    link.start();
    await waitFor(() => link.state().reconnectAttempts >= 1, 'a first attempt');
    await link.stop();
    const attempts = link.state().reconnectAttempts;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(link.state().reconnectAttempts).toBe(attempts);
  });

  it('stops within its bound when the link is black-holed', async () => {
    const { proxy } = await brokerBehindProxy();
    // A long keepalive: without the stop bound, the goodbye would wait for a PUBACK that never comes.
    const { link } = makeLink(brokerConfig(proxy.url, { keepaliveSeconds: 120 }), { stopTimeoutMs: 500 });
    link.start();
    await connected(link);
    proxy.blackhole();
    const outcome = await Promise.race([
      link.stop().then(() => 'stopped'),
      new Promise((resolve) => setTimeout(() => resolve('still stopping after 20 s'), 20_000)),
    ]);
    expect(outcome).toBe('stopped');
  });

  it('never logs credentials given in the broker URL', async () => {
    const up = await broker();
    const { link, logs } = makeLink(brokerConfig(`mqtt://someone:url-secret@127.0.0.1:${up.port}`));
    started(link);
    await connected(link);
    expect(logs().some((line) => line.includes(`127.0.0.1:${up.port}`))).toBe(true);
    expect(logs().join('\n')).not.toContain('url-secret');
  });

  it('refuses unreadable or oversized TLS files up front, naming the key', () => {
    const { dir, cleanup } = tempDir();
    onTestFinished(cleanup);
    const huge = join(dir, 'huge.pem');
    writeFileSync(huge, Buffer.alloc(300 * 1024, 0x41));
    const withTls = (tls: Record<string, string>) => () => makeLink(brokerConfig('mqtts://127.0.0.1:8883', { tls }));
    expect(withTls({ caFile: join(dir, 'missing.pem') })).toThrow(/broker\.tls\.caFile[\s\S]*ENOENT/);
    expect(withTls({ keyFile: huge })).toThrow(/broker\.tls\.keyFile[\s\S]*larger than/);
    expect(withTls({ certFile: huge })).toThrow(ConfigError);
  });

  it('increments the boot sequence in the state database at every start', () => {
    const { dir, cleanup } = tempDir();
    onTestFinished(cleanup);
    const first = openDatabase({ stateDir: dir, fleetletVersion: 'test' });
    expect([nextBootSequence(first.db), nextBootSequence(first.db)]).toEqual([1, 2]);
    first.db.close();
    const second = openDatabase({ stateDir: dir, fleetletVersion: 'test' });
    expect(nextBootSequence(second.db)).toBe(3);
    second.db.close();
  });
});

describe('link: faults on the wire', () => {
  it('detects a black-holed link by keepalive, and reconnects once it heals', async () => {
    const { up, proxy } = await brokerBehindProxy();
    const fleet = await observe(up.url, [PRESENCE]);
    const { link } = makeLink(brokerConfig(proxy.url, { keepaliveSeconds: 5 }));
    started(link);
    await connected(link);
    const accepted = proxy.accepted;

    proxy.blackhole(); // no RST, no FIN: only the keepalive can tell
    await disconnected(link);
    expect(link.state().lastError).toMatch(/keepalive|timeout/i);

    proxy.heal();
    await waitFor(() => link.state().connected && proxy.accepted > accepted, 'a new connection through the healed link', 30_000);
    // The broker may only now let go of the old, half-open session (and send its will): the birth must come last.
    const online = () => fleet.messages.filter((m) => (m.json as { state?: string })?.state === 'online').length;
    await waitFor(() => online() === 2, 'the second birth');
    expect(await Observer.retained(up.url, PRESENCE)).toMatchObject({ state: 'online', bootSequence: 7 });
  });

  it('survives garbage from the broker side: drops the connection and comes back', async () => {
    const { proxy } = await brokerBehindProxy();
    const { link } = makeLink(brokerConfig(proxy.url));
    started(link);
    await connected(link);
    const accepted = proxy.accepted;
    // A reserved packet type with an absurd length: no MQTT parser can accept it.
    proxy.injectToClients(Buffer.from([0xf0, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01]));
    await waitFor(() => proxy.accepted > accepted && link.state().connected, 'a fresh connection after the garbage', 30_000);
    expect(link.state().lastError).toBeDefined();
  });

  it('still connects and delivers over a slow link', async () => {
    const { up, proxy } = await brokerBehindProxy();
    proxy.slow(300);
    const fleet = await observe(up.url, [PRESENCE]);
    const { link } = makeLink(brokerConfig(proxy.url));
    started(link);
    await fleet.waitFor((m) => (m.json as { state?: string })?.state === 'online', 'the birth over a slow link');
    expect(link.state().connected).toBe(true);
  });

  it('reconnects after the connection is cut repeatedly, backing off while the broker refuses', async () => {
    const { proxy } = await brokerBehindProxy();
    const { link } = makeLink(brokerConfig(proxy.url));
    started(link);
    await connected(link);
    proxy.refuse();
    proxy.cut();
    await waitFor(() => link.state().reconnectAttempts >= 3, 'several refused attempts');
    expect(link.state().connected).toBe(false);
    proxy.heal();
    await connected(link);
  });
});

describe('link: commands and the drain', () => {
  it('hands over command messages within the size bound and drops the rest', async () => {
    const up = await broker();
    const made = makeLink(brokerConfig(up.url), { maxMessageBytes: 1024 });
    const { link, logs } = made;
    const received: { topic: string; payload: string }[] = [];
    link.onCommand((topic, payload) => received.push({ topic, payload: payload.toString() }));
    link.onCommand(() => {
      throw new Error('a failing handler must not stop the others');
    });
    started(link);
    await announced(made);
    const fleet = await observe(up.url, []);
    await fleet.client.publishAsync('fleetlet/v1/devices/dev-a/commands', 'x'.repeat(5000), { qos: 1 });
    await fleet.client.publishAsync('fleetlet/v1/devices/dev-b/commands', 'not-for-us', { qos: 1 });
    await fleet.client.publishAsync('fleetlet/v1/groups/other/commands', 'not-our-group', { qos: 1 });
    await fleet.client.publishAsync('fleetlet/v1/devices/dev-a/commands', '{not json', { qos: 1 });
    await waitFor(() => received.length >= 1, 'the small command');
    expect(received).toEqual([{ topic: 'fleetlet/v1/devices/dev-a/commands', payload: '{not json' }]);
    expect(logs().some((line) => line.includes('larger than limits.maxMessageBytes'))).toBe(true);
    expect(link.state().connected).toBe(true);
  });

  it('receives commands sent while it was away, through its persistent session', async () => {
    const { up, proxy } = await brokerBehindProxy();
    const made = makeLink(brokerConfig(proxy.url));
    const { link } = made;
    const received: string[] = [];
    link.onCommand((_topic, payload) => received.push(payload.toString()));
    started(link);
    await announced(made);

    proxy.refuse();
    proxy.cut();
    await disconnected(link);
    const fleet = await observe(up.url, []);
    await fleet.client.publishAsync('fleetlet/v1/devices/dev-a/commands', 'sent-while-away', { qos: 1 });
    await fleet.client.publishAsync('fleetlet/v1/groups/canary/commands', 'group-while-away', { qos: 1 });
    expect(received).toEqual([]);

    proxy.heal();
    await waitFor(() => received.length === 2, 'the queued commands after the reconnect');
    expect(received.sort()).toEqual(['group-while-away', 'sent-while-away']);
  });

  it('lets go of a group it no longer belongs to, left over in its session', async () => {
    const up = await broker();
    const before = makeLink(brokerConfig(up.url), { groups: ['canary', 'retired'] });
    before.link.start();
    await announced(before);
    await before.link.stop();

    const made = makeLink(brokerConfig(up.url), { groups: ['canary'] });
    const { link, logs } = made;
    const received: string[] = [];
    link.onCommand((_topic, payload) => received.push(payload.toString()));
    started(link);
    await announced(made);
    const fleet = await observe(up.url, []);
    const strays = () => logs().filter((line) => line.includes('did not subscribe')).length;
    await fleet.client.publishAsync('fleetlet/v1/groups/retired/commands', 'old-group-1', { qos: 1 });
    await waitFor(() => logs().some((line) => line.includes('unsubscribed from a topic left over')), 'the unsubscribe');
    expect(strays()).toBe(1);
    await fleet.client.publishAsync('fleetlet/v1/groups/retired/commands', 'old-group-2', { qos: 1 });
    await fleet.client.publishAsync('fleetlet/v1/groups/canary/commands', 'current-group', { qos: 1 });
    await waitFor(() => received.includes('current-group'), 'a command of the current group');
    expect(received).toEqual(['current-group']);
    expect(strays()).toBe(1); // unsubscribed after the first: the broker sent no second one
  });

  it('starts the drain after the birth on every connect and stops it on disconnect', async () => {
    const { up, proxy } = await brokerBehindProxy();
    const fleet = await observe(up.url, [PRESENCE, 'fleetlet/v1/devices/dev-a/status']);
    const events: string[] = [];
    let publisher: Publisher | undefined;
    let session = 0;
    const drain: LinkDrain = {
      onConnect: (p) => {
        events.push('start');
        publisher = p;
        // What the drain sends must reach the fleet after this session's birth.
        p.send('fleetlet/v1/devices/dev-a/status', JSON.stringify({ session: ++session }), { qos: 1, retain: false }, () => {});
      },
      onDisconnect: () => {
        events.push('stop');
        publisher = undefined;
      },
      stop: () => {},
    };
    const { link } = makeLink(brokerConfig(proxy.url), { drain });
    started(link);
    await waitFor(() => publisher !== undefined, 'the drain to start');
    await fleet.waitFor((m) => m.text === '{"session":1}', 'the first drained message');

    proxy.cut();
    await waitFor(() => events.length === 3, 'the drain to stop and start again');
    expect(events).toEqual(['start', 'stop', 'start']);
    await fleet.waitFor((m) => m.text === '{"session":2}', 'the second drained message');
    const order = fleet.messages.map((m) => (m.topic === PRESENCE ? (m.json as { state: string }).state : m.text));
    const births = order.flatMap((item, index) => (item === 'online' ? [index] : []));
    expect(births).toHaveLength(2);
    expect(order.indexOf('{"session":1}')).toBeGreaterThan(births[0]!);
    expect(order.indexOf('{"session":2}')).toBeGreaterThan(births[1]!);
  });
});
