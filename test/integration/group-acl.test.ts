import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { IClientOptions } from 'mqtt';
import { createCa, issueCert, type KeyPair } from '../helpers/certs.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { announced, brokerConfig, makeLink } from '../helpers/link.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from '../helpers/shipped-broker.js';

/**
 * The shipped mosquitto config and ACL, with the group rules `fleetlet fleet acl` generates from a membership list:
 * a device reads the command topics of its own groups and of no other.
 */
const ROOT = 'fleetlet/v1';
const alpha = `${ROOT}/groups/alpha/commands`;
const beta = `${ROOT}/groups/beta/commands`;

describe.skipIf(!mosquittoAvailable())('group command topics under the generated ACL', () => {
  let dir: string;
  let cleanupDir: () => void;
  let broker: TestBroker;
  let url: string;
  let ca: KeyPair;
  const certs: Record<string, KeyPair> = {};

  /** Writes the membership list and the ACL `fleetlet fleet acl` makes of it, where the broker reads it. */
  function applyGroups(yaml: string): void {
    writeFileSync(join(dir, 'groups.yaml'), yaml);
    const made = runCli(['fleet', 'acl', '--groups', join(dir, 'groups.yaml'), '--base', join(dir, 'acl.base')]);
    expect(made.code, made.stderr).toBe(0);
    writeFileSync(join(dir, 'acl'), made.stdout);
    chmodSync(join(dir, 'acl'), 0o644);
  }

  beforeAll(async () => {
    const temp = tempDir('fleetlet-group-acl-');
    ({ dir, cleanup: cleanupDir } = temp);
    ca = createCa(dir, 'fleet-ca');
    const server = issueCert(ca, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
    copyFileSync(ca.cert, join(dir, 'ca.crt'));
    copyFileSync(server.cert, join(dir, 'broker.crt'));
    copyFileSync(server.key, join(dir, 'broker.key'));
    copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(dir, 'acl.base'));
    for (const name of ['dev-a', 'dev-b', 'fleet-operator']) certs[name] = issueCert(ca, dir, name);
    applyGroups('groups:\n  alpha: [dev-a]\n  beta: [dev-a, dev-b]\n');
    // mosquitto started as root reads these after dropping to its own user.
    chmodSync(dir, 0o755);
    for (const name of ['ca.crt', 'broker.crt', 'broker.key']) chmodSync(join(dir, name), 0o644);
    broker = await startMosquitto(shippedMosquittoConfig(dir));
    url = `mqtts://127.0.0.1:${broker.port}`;
  });

  afterAll(async () => {
    await broker?.close();
    cleanupDir?.();
  });

  const as = (name: string): IClientOptions => ({
    ca: readFileSync(ca.cert),
    cert: readFileSync(certs[name]!.cert),
    key: readFileSync(certs[name]!.key),
  });

  async function client(name: string, topics: string[] = []): Promise<Observer> {
    const observer = await Observer.connect(url, topics, as(name));
    onTestFinished(() => observer.close());
    return observer;
  }

  it('generates one user block per device with the command topics of its groups only', () => {
    const acl = readFileSync(join(dir, 'acl'), 'utf8');
    expect(acl.startsWith(readFileSync(join(dir, 'acl.base'), 'utf8').trimEnd())).toBe(true);
    expect(acl).toContain(`user dev-a\ntopic read ${alpha}\ntopic read ${beta}\n`);
    expect(acl).toContain(`user dev-b\ntopic read ${beta}\n`);
    expect(acl).not.toMatch(/groups\/\+/);
  });

  /**
   * Publishes on alpha, then on beta (which both devices read): once `reader` has the beta message, the alpha one
   * was delivered already if it was going to be. mosquitto's acl_file grants every SUBACK and filters at delivery.
   */
  async function alphaReaches(reader: Observer, marker: string): Promise<boolean> {
    const operator = await client('fleet-operator');
    await operator.client.publishAsync(alpha, `alpha-${marker}`, { qos: 1 });
    await operator.client.publishAsync(beta, `beta-${marker}`, { qos: 1 });
    await reader.waitFor((m) => m.text === `beta-${marker}`, `the beta command ${marker}`);
    return reader.messages.some((m) => m.text === `alpha-${marker}`);
  }

  it('a device that is not in group alpha cannot receive its commands, whatever it subscribes to; a member can', async () => {
    const member = await client('dev-a', [alpha, beta]);
    const outsider = await client('dev-b', [alpha, `${ROOT}/groups/+/commands`, `${ROOT}/#`, beta]);
    expect(await alphaReaches(member, 'one')).toBe(true);
    expect(await alphaReaches(outsider, 'two')).toBe(false);
  });

  it("the agent's link in a group it is not a member of stays connected and receives its own and its groups' commands only", async () => {
    const made = makeLink(brokerConfig(url, { tls: { caFile: ca.cert, certFile: certs['dev-b']!.cert, keyFile: certs['dev-b']!.key } }), {
      deviceId: 'dev-b',
      groups: ['alpha', 'beta'],
    });
    const received: string[] = [];
    made.link.onCommand((_topic, payload) => received.push(payload.toString()));
    made.link.start();
    onTestFinished(() => made.link.stop());
    await announced(made);
    const operator = await client('fleet-operator');
    await operator.client.publishAsync(alpha, 'for-alpha', { qos: 1 });
    await operator.client.publishAsync(`${ROOT}/devices/dev-b/commands`, 'for-dev-b', { qos: 1 });
    await operator.client.publishAsync(beta, 'for-beta', { qos: 1 });
    await waitFor(() => received.includes('for-dev-b') && received.includes('for-beta'), 'its own and its group commands');
    expect(received).not.toContain('for-alpha');
    expect(made.link.state()).toMatchObject({ connected: true, subscribed: true, reconnectAttempts: 0 });
  });

  it('a device added to a group in the list reads it once the ACL is regenerated and mosquitto reloaded (SIGHUP)', async () => {
    const outsider = await client('dev-b', [alpha, beta]);
    expect(await alphaReaches(outsider, 'before')).toBe(false);
    applyGroups('groups:\n  alpha: [dev-a, dev-b]\n  beta: [dev-a, dev-b]\n');
    broker.reload!();
    let reached = false;
    for (let attempt = 0; attempt < 20 && !reached; attempt++) {
      reached = await alphaReaches(outsider, `after-${attempt}`);
      if (!reached) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(reached).toBe(true);
  });

  it('refuses a membership list whose names could widen a rule or break a line', () => {
    writeFileSync(join(dir, 'bad-groups.yaml'), 'groups:\n  "alpha/#": [dev-a]\n');
    const wildcard = runCli(['fleet', 'acl', '--groups', join(dir, 'bad-groups.yaml')]);
    expect(wildcard.code).toBe(64);
    expect(wildcard.stdout).toBe('');
    writeFileSync(join(dir, 'bad-groups.yaml'), 'groups:\n  alpha: ["dev-a\\ntopic readwrite #"]\n');
    const injected = runCli(['fleet', 'acl', '--groups', join(dir, 'bad-groups.yaml')]);
    expect(injected.code).toBe(64);
    expect(injected.stdout).toBe('');
  });
});

/**
 * A broker that refuses a subscription in its SUBACK (0x80) rather than filtering deliveries, as mosquitto's dynamic
 * security plugin and clustered brokers do: aedes with a subscription check.
 */
describe('the link when the broker refuses a group subscription (SUBACK 0x80)', () => {
  let close: () => Promise<void>;
  let url: string;
  const links: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    const broker = await Aedes.createBroker({
      authorizeSubscribe: (_client, subscription, done) => done(null, subscription.topic === alpha ? null : subscription),
    });
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      broker.handle(socket);
    });
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    url = `mqtt://127.0.0.1:${port}`;
    close = async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await closed;
    };
  });

  afterAll(async () => {
    for (const link of links) await link.stop();
    await close?.();
  });

  it('logs the refused topic once, stays subscribed to its own commands and connected, and does not reconnect over it', async () => {
    const made = makeLink(brokerConfig(url), { deviceId: 'dev-b', groups: ['alpha', 'beta'] });
    links.push(made.link);
    const received: string[] = [];
    made.link.onCommand((_topic, payload) => received.push(payload.toString()));
    made.link.start();
    await announced(made);
    const refusal = made.logs().find((line) => line.includes('the broker refused command subscriptions'));
    expect(JSON.parse(refusal ?? '{}')).toMatchObject({ level: 'error', topics: [alpha] });
    expect(made.link.state()).toMatchObject({ connected: true, subscribed: true, refusedTopics: [alpha] });

    const operator = await Observer.connect(url, []);
    await operator.client.publishAsync(`${ROOT}/devices/dev-b/commands`, 'for-dev-b', { qos: 1 });
    await operator.client.publishAsync(beta, 'for-beta', { qos: 1 });
    await waitFor(() => received.includes('for-dev-b') && received.includes('for-beta'), 'its own and its group commands');
    await operator.close();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(made.link.state()).toMatchObject({ connected: true, reconnectAttempts: 0 });
    expect(made.logs().filter((line) => line.includes('connected to the broker'))).toHaveLength(1);
    expect(made.logs().filter((line) => line.includes('refused command subscriptions'))).toHaveLength(1);
  });
});
