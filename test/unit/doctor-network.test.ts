import { chmodSync, copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer as createTcpServer, type Server } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigSchema, type ConfigInput } from '../../src/config/schema.js';
import type { DoctorContext } from '../../src/cli/doctor/check.js';
import { checkBroker, checkK3sServer } from '../../src/cli/doctor/network.js';
import { createNetworkProbe } from '../../src/cli/doctor/network-probe.js';
import { createCa, issueCert, type KeyPair } from '../helpers/certs.js';
import { tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from '../helpers/shipped-broker.js';

const { dir, cleanup } = tempDir('fleetlet-doctor-tls-');
const servers: Server[] = [];
let ca: KeyPair;
let client: KeyPair;

function listen(server: Server): Promise<number> {
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
}

function tlsServer(pair: KeyPair, requireClientCert = false): Promise<number> {
  const server = createTlsServer({
    cert: readFileSync(pair.cert),
    key: readFileSync(pair.key),
    ...(requireClientCert ? { requestCert: true, rejectUnauthorized: true, ca: readFileSync(ca.cert) } : {}),
  });
  server.on('secureConnection', (socket) => socket.end());
  server.on('tlsClientError', () => {});
  return listen(server);
}

function context(config: ConfigInput): DoctorContext {
  return {
    root: '/',
    image: false,
    config: ConfigSchema.parse(config),
    arch: 'x64',
    now: new Date(),
    probe: createNetworkProbe(3000),
    freeBytes: () => 0,
  };
}

const broker = (url: string, tls: Record<string, string> = {}) => context({ device: {}, broker: { url, allowPlaintext: true, tls }, k3s: { enabled: false } });

let ports: { good: number; wrongName: number; expired: number; closed: number; plain: number };

beforeAll(async () => {
  ca = createCa(dir, 'fleet-ca');
  client = issueCert(ca, dir, 'pi-01');
  const server = issueCert(ca, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
  ports = {
    good: await tlsServer(server),
    wrongName: await tlsServer(issueCert(ca, dir, 'elsewhere', { server: true, altNames: ['DNS:elsewhere.test'] })),
    expired: await tlsServer(issueCert(ca, dir, 'old', { server: true, altNames: ['IP:127.0.0.1'], expired: true })),
    closed: await freePort(),
    plain: await listen(createTcpServer((socket) => socket.end())),
  };
});

afterAll(() => {
  for (const server of servers) server.close();
  cleanup();
});

describe('doctor: broker reachability and TLS, against real loopback servers', () => {
  it('fails a verified handshake with a server that then does not speak MQTT', async () => {
    const [result] = await checkBroker(broker(`mqtts://127.0.0.1:${ports.good}`, { caFile: ca.cert }));
    expect(result).toMatchObject({ check: 'broker', status: 'fail' });
    expect(result!.summary).toContain(`127.0.0.1:${ports.good} (TLS verified) refused this device`);
  });

  it('fails without the CA, and says to set broker.tls.caFile', async () => {
    const [result] = await checkBroker(broker(`mqtts://127.0.0.1:${ports.good}`));
    expect(result).toMatchObject({ status: 'fail', fix: 'set broker.tls.caFile to the CA that signed the broker certificate' });
  });

  it('fails on a certificate for another name, and points at broker.tls.serverName', async () => {
    const [result] = await checkBroker(broker(`mqtts://127.0.0.1:${ports.wrongName}`, { caFile: ca.cert }));
    expect(result!.status).toBe('fail');
    expect(result!.fix).toContain('broker.tls.serverName');
  });

  it('fails on an expired certificate', async () => {
    const [result] = await checkBroker(broker(`mqtts://127.0.0.1:${ports.expired}`, { caFile: ca.cert }));
    expect(result!.summary).toContain('CERT_HAS_EXPIRED');
    expect(result!.fix).toContain('expired');
  });

  it('fails on a closed port with a reachability fix', async () => {
    const [result] = await checkBroker(broker(`mqtts://127.0.0.1:${ports.closed}`, { caFile: ca.cert }));
    expect(result).toMatchObject({ status: 'fail', summary: `TLS with 127.0.0.1:${ports.closed} failed: ECONNREFUSED` });
    expect(result!.fix).toContain(`TCP port ${ports.closed}`);
  });

  it('fails a plain mqtt:// port that answers but is no broker', async () => {
    const [result] = await checkBroker(broker(`mqtt://127.0.0.1:${ports.plain}`));
    expect(result).toMatchObject({ status: 'fail' });
    expect(result!.summary).toContain('refused this device');
  });
});

/**
 * The broker check passes only when the broker takes this device: a real mosquitto with the shipped config (mutual
 * TLS, certificates from the fleet CA only). A TLS 1.3 client finishes its handshake before the broker checks the
 * client certificate, so a handshake alone would pass a certificate the broker then refuses.
 */
describe.skipIf(!mosquittoAvailable())('doctor: the shipped broker accepts this device, or says why not', () => {
  let shipped: TestBroker;
  let url: string;
  let otherCa: KeyPair;

  beforeAll(async () => {
    const brokerDir = join(dir, 'shipped');
    mkdirSync(brokerDir);
    const server = issueCert(ca, brokerDir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
    copyFileSync(ca.cert, join(brokerDir, 'ca.crt'));
    copyFileSync(server.cert, join(brokerDir, 'broker.crt'));
    copyFileSync(server.key, join(brokerDir, 'broker.key'));
    copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(brokerDir, 'acl'));
    // mosquitto started as root reads these after dropping to its own user.
    chmodSync(dir, 0o755);
    chmodSync(brokerDir, 0o755);
    for (const name of ['ca.crt', 'broker.crt', 'broker.key', 'acl']) chmodSync(join(brokerDir, name), 0o644);
    otherCa = createCa(brokerDir, 'other-ca');
    shipped = await startMosquitto(shippedMosquittoConfig(brokerDir));
    url = `mqtts://127.0.0.1:${shipped.port}`;
  });
  afterAll(async () => {
    await shipped?.close();
  });

  it('passes a device certificate the broker accepts', async () => {
    const [result] = await checkBroker(broker(url, { caFile: ca.cert, certFile: client.cert, keyFile: client.key }));
    expect(result).toEqual({ check: 'broker', status: 'pass', summary: `127.0.0.1:${shipped.port} accepts this device: TLS verified, client certificate accepted` });
  });

  it('fails a client certificate from a CA the broker does not trust, although the TLS handshake verified the server', async () => {
    const foreign = issueCert(otherCa, dir, 'pi-01');
    const options = { caFile: ca.cert, certFile: foreign.cert, keyFile: foreign.key };
    const [result] = await checkBroker(broker(url, options));
    expect(result).toMatchObject({ check: 'broker', status: 'fail' });
    expect(result!.summary).toContain(`127.0.0.1:${shipped.port} (TLS verified) refused this device`);
    expect(result!.fix).toContain('issue broker.tls.certFile from the CA the broker trusts');
  });

  it('with enrolment configured but no certificate yet: fails, never passes, and says the device is not enrolled', async () => {
    const config = context({
      device: { id: 'pi-01' },
      broker: { url, tls: { caFile: ca.cert } },
      k3s: { enabled: false },
      stateDir: join(dir, 'not-enrolled'),
      enrolment: { hubUrl: 'https://hub.example.net', bootstrapTokenFile: join(dir, 'token') },
    });
    const [result] = await checkBroker(config);
    expect(result).toMatchObject({ check: 'broker', status: 'fail' });
    expect(result!.summary).toContain('not enrolled yet');
  });

  it('fails without a client certificate, and says to set one', async () => {
    const [result] = await checkBroker(broker(url, { caFile: ca.cert }));
    expect(result).toMatchObject({ status: 'fail' });
    expect(result!.fix).toContain('broker.tls.certFile');
    expect(result!.fix).toContain('enrol the device');
  });
});

describe.skipIf(!mosquittoAvailable())('doctor: a plain broker that takes anonymous clients', () => {
  it('warns that it is unencrypted, once the broker accepted the connection', async () => {
    const plain = await startMosquitto({ listenerLines: ['allow_anonymous true'] });
    try {
      const [result] = await checkBroker(broker(plain.url));
      expect(result).toMatchObject({ status: 'warn', summary: `127.0.0.1:${plain.port} accepts this device over plain mqtt:// (unencrypted)` });
      expect(result!.fix).toBe('use an mqtts:// URL with broker.tls.caFile');
    } finally {
      await plain.close();
    }
  });
});

describe('doctor: k3s server TLS handshake', () => {
  const k3s = (serverUrl: string) => context({ device: {}, broker: { url: 'mqtts://127.0.0.1:1' }, k3s: { serverUrl } });

  it('passes a handshake with a server whose CA it does not know (k3s checks the CA hash itself)', async () => {
    const [result] = await checkK3sServer(k3s(`https://127.0.0.1:${ports.good}`));
    expect(result).toEqual({ check: 'k3s-server', status: 'pass', summary: `TLS handshake with 127.0.0.1:${ports.good}` });
  });

  it('warns when the server certificate has expired', async () => {
    const [result] = await checkK3sServer(k3s(`https://127.0.0.1:${ports.expired}`));
    expect(result!.status).toBe('warn');
  });

  it('fails when nothing answers, and when no server is configured', async () => {
    expect((await checkK3sServer(k3s(`https://127.0.0.1:${ports.closed}`)))[0]!.status).toBe('fail');
    const none = context({ device: {}, broker: { url: 'mqtts://127.0.0.1:1' } });
    expect((await checkK3sServer(none))[0]).toMatchObject({ status: 'fail', fix: 'set k3s.serverUrl: https://<server>:6443' });
  });
});
