import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { EnrolClient } from '../../src/identity/enrol-client.js';
import { EnrolmentHubError } from '../../src/identity/errors.js';
import { FileKeyStore } from '../../src/identity/device-key-store.js';
import { createCa, issueCert } from '../helpers/certs.js';
import { tempDir } from '../helpers/paths.js';

/** The device's enrolment client against small real servers that answer outside the contract. */
const { dir, cleanup } = tempDir('fleetlet-enrol-client-');
afterAll(cleanup);

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => void server.close());
  return (server.address() as AddressInfo).port;
}

async function plainHub(handler: RequestListener): Promise<EnrolClient> {
  const port = await listen(createHttpServer(handler));
  return new EnrolClient({ hubUrl: `http://127.0.0.1:${port}`, hubCaPem: '' });
}

async function request() {
  const keys = new FileKeyStore();
  const slot = `${dir}/slot-${Math.random().toString(36).slice(2)}`;
  await keys.generate(slot);
  return { deviceId: 'dev-a', csrPem: await keys.signCsr(slot, 'dev-a') };
}

describe('the enrolment client', () => {
  it('takes a 403 without an enrolment answer (a proxy, an older hub) as a refusal', async () => {
    const client = await plainHub((_req, res) => res.writeHead(403).end('Forbidden'));
    expect(await client.send('enrol', 'token-'.repeat(8), await request())).toEqual({ status: 'refused', reason: 'HTTP 403' });
  });

  it('fails transiently on a server error, an answer that contradicts its status, and an oversized answer', async () => {
    const body = await request();
    const errors = await plainHub((_req, res) => res.writeHead(500).end('{}'));
    await expect(errors.send('enrol', 'token-'.repeat(8), body)).rejects.toThrow(/HTTP 500/);
    const contradicting = await plainHub((_req, res) => res.writeHead(200).end(JSON.stringify({ status: 'pending', deviceId: 'dev-a', retryAfterSeconds: 5 })));
    await expect(contradicting.send('enrol', 'token-'.repeat(8), body)).rejects.toThrow(/HTTP 200 but "pending"/);
    const huge = await plainHub((_req, res) => res.writeHead(200).end('x'.repeat(200 * 1024)));
    await expect(huge.send('enrol', 'token-'.repeat(8), body)).rejects.toBeInstanceOf(EnrolmentHubError);
  });

  it('sends the credential only as a bearer header, and refuses a hub whose certificate is not from the fleet CA', async () => {
    let authorization: string | undefined;
    const seen = await plainHub((req, res) => {
      authorization = req.headers.authorization;
      res.writeHead(403).end(JSON.stringify({ status: 'refused', reason: 'no' }));
    });
    expect(await seen.send('renew', 'credential-'.repeat(4), await request())).toEqual({ status: 'refused', reason: 'no' });
    expect(authorization).toBe(`Bearer ${'credential-'.repeat(4)}`);

    const fleetCa = createCa(dir, 'fleet-ca');
    const otherCa = createCa(dir, 'other-ca');
    const pair = issueCert(otherCa, dir, 'hub', { server: true, altNames: ['IP:127.0.0.1'] });
    let reached = false;
    const port = await listen(createHttpsServer({ cert: readFileSync(pair.cert), key: readFileSync(pair.key) }, (_req, res) => {
      reached = true;
      res.end('{}');
    }));
    const client = new EnrolClient({ hubUrl: `https://127.0.0.1:${port}`, hubCaPem: readFileSync(fleetCa.cert, 'utf8') });
    await expect(client.send('enrol', 'token-'.repeat(8), await request())).rejects.toThrow(/cannot reach the hub at https:\/\/127\.0\.0\.1:\d+: .*certificate/i);
    expect(reached).toBe(false);
  });
});
