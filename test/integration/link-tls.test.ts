import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { IClientOptions } from 'mqtt';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/lib/errors.js';
import type { MqttLink } from '../../src/link/link.js';
import { createCa, issueCert, type KeyPair } from '../helpers/certs.js';
import { waitFor } from '../helpers/wait.js';
import { announced, brokerConfig, makeLink } from '../helpers/link.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from '../helpers/shipped-broker.js';

/**
 * The shipped broker configuration (packaging/cloud/mosquitto) with certificates made at test time: mutual TLS,
 * the per-device ACL, and the agent's own checks. Needs the real mosquitto; skipped (with the reason) without it.
 */
const ROOT = 'fleetlet/v1';

interface Pki {
  dir: string;
  ca: KeyPair;
  otherCa: KeyPair;
  devA: KeyPair;
  devB: KeyPair;
  operator: KeyPair;
  expiredA: KeyPair;
  foreignA: KeyPair;
}

if (!mosquittoAvailable()) {
  console.warn('mosquitto is not installed: the TLS and ACL tests need its configuration and are skipped');
}

describe.skipIf(!mosquittoAvailable())('link over TLS with the shipped mosquitto config and ACL', () => {
  let pki: Pki;
  let broker: TestBroker;
  let url: string;
  let cleanupDir: () => void;

  beforeAll(async () => {
    const temp = tempDir('fleetlet-pki-');
    cleanupDir = temp.cleanup;
    const dir = temp.dir;
    const ca = createCa(dir, 'fleet-ca');
    const otherCa = createCa(dir, 'other-ca');
    const server = issueCert(ca, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1', 'DNS:broker.test'] });
    copyFileSync(ca.cert, join(dir, 'ca.crt'));
    copyFileSync(server.cert, join(dir, 'broker.crt'));
    copyFileSync(server.key, join(dir, 'broker.key'));
    copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(dir, 'acl'));
    // mosquitto started as root reads these after dropping to its own user.
    chmodSync(dir, 0o755);
    for (const name of ['ca.crt', 'broker.crt', 'broker.key', 'acl']) chmodSync(join(dir, name), 0o644);
    pki = {
      dir,
      ca,
      otherCa,
      devA: issueCert(ca, dir, 'dev-a'),
      devB: issueCert(ca, dir, 'dev-b'),
      operator: issueCert(ca, dir, 'fleet-operator'),
      expiredA: issueCert(ca, dir, 'dev-a', { expired: true }),
      foreignA: issueCert(otherCa, dir, 'dev-a'),
    };
    broker = await startMosquitto(shippedMosquittoConfig(dir));
    url = `mqtts://127.0.0.1:${broker.port}`;
  });

  afterAll(async () => {
    await broker?.close();
    cleanupDir?.();
  });

  const tls = (pair: KeyPair, overrides: Record<string, unknown> = {}) => ({
    tls: { caFile: pki.ca.cert, certFile: pair.cert, keyFile: pair.key, ...overrides },
  });

  function link(deviceId: string, pair: KeyPair, overrides: Record<string, unknown> = {}) {
    const made = makeLink(brokerConfig(url, tls(pair, overrides)), { deviceId, groups: ['canary'] });
    made.link.start();
    onTestFinished(() => made.link.stop());
    return made;
  }

  const asClient = (pair: KeyPair, extra: IClientOptions = {}): IClientOptions => ({
    ca: readFileSync(pki.ca.cert),
    cert: readFileSync(pair.cert),
    key: readFileSync(pair.key),
    ...extra,
  });

  async function operator(topics: string[]): Promise<Observer> {
    const observer = await Observer.connect(url, topics, asClient(pki.operator, { clientId: 'fleet-operator' }));
    onTestFinished(() => observer.close());
    return observer;
  }

  /** Several attempts have failed and none succeeded. */
  async function refused(made: { link: MqttLink; logs: () => string[] }): Promise<string> {
    await waitFor(() => made.link.state().reconnectAttempts >= 3, 'three failed attempts', 30_000);
    expect(made.link.state().connected).toBe(false);
    expect(made.logs().some((line) => line.includes('connected to the broker'))).toBe(false);
    return made.link.state().lastError ?? '';
  }

  it('connects with the device certificate and announces itself to the operator', async () => {
    const made = link('dev-a', pki.devA);
    await announced(made);
    const presence = await Observer.retained(url, `${ROOT}/devices/dev-a/presence`, asClient(pki.operator));
    expect(presence).toMatchObject({ state: 'online', bootSequence: 7 });
  });

  it('checks the broker certificate against serverName', async () => {
    const good = link('dev-a', pki.devA, { serverName: 'broker.test' });
    await waitFor(() => good.link.state().connected, 'a connection checked against broker.test', 20_000);
    await good.link.stop();
    const wrong = link('dev-a', pki.devA, { serverName: 'other.test' });
    expect(await refused(wrong)).toMatch(/altnames|other\.test/i);
  });

  it('refuses a broker whose certificate is not from the configured CA', async () => {
    const made = link('dev-a', pki.devA, { caFile: pki.otherCa.cert });
    expect(await refused(made)).toMatch(/certificate|self.signed|verify/i);
  });

  it('is refused by the broker with an expired certificate', async () => {
    await refused(link('dev-a', pki.expiredA));
  });

  it('is refused by the broker with a certificate from another CA', async () => {
    await refused(link('dev-a', pki.foreignA));
  });

  it('refuses to run with a certificate issued to another device', () => {
    expect(() => makeLink(brokerConfig(url, tls(pki.devB)), { deviceId: 'dev-a' })).toThrow(ConfigError);
    expect(() => makeLink(brokerConfig(url, tls(pki.devB)), { deviceId: 'dev-a' })).toThrow(/issued to "dev-b"/);
  });

  it('the ACL keeps a device out of another device\'s topics, and its session cannot be taken over', async () => {
    const fleet = await operator([`${ROOT}/devices/+/+`]);
    const devA = link('dev-a', pki.devA);
    const commandsA: string[] = [];
    devA.link.onCommand((_topic, payload) => commandsA.push(payload.toString()));
    // Earlier tests left a retained presence; only live messages count here.
    await fleet.waitFor((m) => !m.retain && (m.json as { state?: string })?.state === 'online', 'dev-a online');

    // dev-b's certificate, claiming dev-a's client id: the broker names it dev-b anyway.
    const intruder = await Observer.connect(
      url,
      [`${ROOT}/devices/dev-a/commands`, `${ROOT}/devices/+/commands`, `${ROOT}/#`],
      asClient(pki.devB, { clientId: 'dev-a' }),
    );
    onTestFinished(() => intruder.close());
    await intruder.client.publishAsync(`${ROOT}/devices/dev-a/presence`, 'forged', { qos: 1, retain: true });
    await intruder.client.publishAsync(`${ROOT}/devices/dev-a/status`, 'forged', { qos: 1 });
    await intruder.client.publishAsync(`${ROOT}/devices/dev-b/status`, 'legit', { qos: 1 });
    await fleet.waitFor((m) => m.text === 'legit', 'the intruder\'s own status');
    expect(fleet.messages.filter((m) => m.text === 'forged')).toEqual([]);

    await fleet.client.publishAsync(`${ROOT}/devices/dev-a/commands`, 'for-a', { qos: 1 });
    await fleet.client.publishAsync(`${ROOT}/devices/dev-b/commands`, 'for-b', { qos: 1 });
    await waitFor(() => commandsA.includes('for-a'), 'dev-a to get its command');
    await intruder.waitFor((m) => m.text === 'for-b', 'dev-b to get its own command');
    expect(intruder.messages.filter((m) => m.text === 'for-a')).toEqual([]);

    // The real dev-a was never kicked off: no last will, still connected.
    expect(devA.link.state().connected).toBe(true);
    expect(fleet.messages.filter((m) => !m.retain && (m.json as { state?: string } | undefined)?.state === 'offline')).toEqual([]);
    expect(await Observer.retained(url, `${ROOT}/devices/dev-a/presence`, asClient(pki.operator))).toMatchObject({
      state: 'online',
    });
  });
});

describe.skipIf(!mosquittoAvailable())('link with a username and a password file (the shipped alternative)', () => {
  let broker: TestBroker;
  let dir: string;
  let cleanupDir: () => void;
  const links: MqttLink[] = [];

  beforeAll(async () => {
    const temp = tempDir('fleetlet-pw-');
    ({ dir } = temp);
    cleanupDir = temp.cleanup;
    const ca = createCa(dir, 'fleet-ca');
    const server = issueCert(ca, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
    copyFileSync(ca.cert, join(dir, 'ca.crt'));
    copyFileSync(server.cert, join(dir, 'broker.crt'));
    copyFileSync(server.key, join(dir, 'broker.key'));
    copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(dir, 'acl'));
    writeFileSync(join(dir, 'passwords'), `${mosquittoPasswordLine('dev-a', 'correct horse battery staple')}\n`);
    chmodSync(dir, 0o755);
    for (const name of ['ca.crt', 'broker.crt', 'broker.key', 'acl', 'passwords']) chmodSync(join(dir, name), 0o644);
    const shipped = shippedMosquittoConfig(dir);
    // As the comment in mosquitto.conf says: no client certificates, a password file instead.
    const listenerLines = shipped.listenerLines
      .filter((line) => !/^(require_certificate|use_identity_as_username)\b/.test(line))
      .concat(['require_certificate false', `password_file ${dir}/passwords`]);
    broker = await startMosquitto({ globalLines: shipped.globalLines, listenerLines });
  });

  afterAll(async () => {
    for (const link of links) await link.stop();
    await broker?.close();
    cleanupDir?.();
  });

  function linkWithPassword(password: string) {
    const passwordFile = join(dir, `device-password-${links.length}`);
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    const configFile = join(dir, `config-${links.length}.yaml`);
    writeFileSync(
      configFile,
      [
        'device: { id: dev-a }',
        'broker:',
        `  url: mqtts://127.0.0.1:${broker.port}`,
        `  tls: { caFile: ${dir}/ca.crt }`,
        `  auth: { username: dev-a, passwordFile: ${passwordFile} }`,
        '  reconnect: { baseMs: 100, capMs: 1000 }',
        '',
      ].join('\n'),
    );
    const { config } = loadConfig({ path: configFile, explicit: true, env: {} });
    const made = makeLink(config.broker, { deviceId: 'dev-a' });
    links.push(made.link);
    made.link.start();
    return made;
  }

  it('connects with the password read from the file, which never appears in the logs', async () => {
    const made = linkWithPassword('correct horse battery staple');
    await waitFor(() => made.link.state().connected, 'a password-authenticated connection', 20_000);
    expect(made.logs().join('\n')).not.toContain('horse');
  });

  it('is refused with a wrong password', async () => {
    const made = linkWithPassword('wrong');
    await waitFor(() => made.link.state().reconnectAttempts >= 3, 'three refused attempts', 30_000);
    expect(made.link.state().connected).toBe(false);
    expect(made.link.state().lastError).toMatch(/not authorized|bad user name or password/i);
  });
});

/** A mosquitto 2 password file line ($7$: PBKDF2-SHA512, 101 iterations), made here so no password is on a command line. */
function mosquittoPasswordLine(user: string, password: string): string {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(password, salt, 101, 64, 'sha512');
  return `${user}:$7$101$${salt.toString('base64')}$${hash.toString('base64')}`;
}
