import { readFileSync } from 'node:fs';
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

let ports: { good: number; wrongName: number; expired: number; mutual: number; closed: number; plain: number };

beforeAll(async () => {
  ca = createCa(dir, 'fleet-ca');
  client = issueCert(ca, dir, 'pi-01');
  const server = issueCert(ca, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
  ports = {
    good: await tlsServer(server),
    wrongName: await tlsServer(issueCert(ca, dir, 'elsewhere', { server: true, altNames: ['DNS:elsewhere.test'] })),
    expired: await tlsServer(issueCert(ca, dir, 'old', { server: true, altNames: ['IP:127.0.0.1'], expired: true })),
    mutual: await tlsServer(server, true),
    closed: await freePort(),
    plain: await listen(createTcpServer((socket) => socket.end())),
  };
});

afterAll(() => {
  for (const server of servers) server.close();
  cleanup();
});

describe('doctor: broker reachability and TLS, against real loopback servers', () => {
  it('passes a verified handshake with the configured CA', async () => {
    const [result] = await checkBroker(broker(`mqtts://127.0.0.1:${ports.good}`, { caFile: ca.cert }));
    expect(result).toEqual({ check: 'broker', status: 'pass', summary: `TLS handshake with 127.0.0.1:${ports.good} verified` });
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

  it('sends the client certificate to a broker that requires one', async () => {
    const url = `mqtts://127.0.0.1:${ports.mutual}`;
    const [withCert] = await checkBroker(broker(url, { caFile: ca.cert, certFile: client.cert, keyFile: client.key }));
    expect(withCert).toMatchObject({ status: 'pass', summary: `TLS handshake with 127.0.0.1:${ports.mutual} verified (client certificate sent)` });
  });

  it('fails on a closed port with a reachability fix', async () => {
    const [result] = await checkBroker(broker(`mqtts://127.0.0.1:${ports.closed}`, { caFile: ca.cert }));
    expect(result).toMatchObject({ status: 'fail', summary: `TLS with 127.0.0.1:${ports.closed} failed: ECONNREFUSED` });
    expect(result!.fix).toContain(`TCP port ${ports.closed}`);
  });

  it('warns on a reachable plain mqtt:// broker', async () => {
    const [result] = await checkBroker(broker(`mqtt://127.0.0.1:${ports.plain}`));
    expect(result).toMatchObject({ status: 'warn', fix: 'use an mqtts:// URL with broker.tls.caFile' });
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
