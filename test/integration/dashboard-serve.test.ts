import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { startDashboardHub, type DashboardHub } from '../fixtures/dashboard-fleet.js';

/** GET with the raw bytes kept (fetch would undo the gzip the test wants to see). */
function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    })
      .on('error', reject)
      .end();
  });
}

/**
 * The dashboard as the hub binary serves it (the bundle, which carries the built dashboard inside): a public shell
 * and hashed assets under a strict Content-Security-Policy, while every figure stays behind the API's login.
 */
describe.skipIf(!mosquittoAvailable())('the hub serves its dashboard', () => {
  let broker: TestBroker;
  let dir: { dir: string; cleanup: () => void };
  let hub: DashboardHub;

  beforeAll(async () => {
    broker = await startMosquitto();
    dir = tempDir('fleetlet-dashboard-serve-');
    hub = await startDashboardHub(dir.dir, broker.url);
  }, 90_000);

  afterAll(async () => {
    await hub?.stop();
    await broker?.close();
    dir?.cleanup();
  });

  it('serves the shell without a session, under a CSP that allows no inline script and no other origin', async () => {
    const shell = await get(`${hub.url}/`);
    expect(shell.status).toBe(200);
    expect(shell.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(shell.headers['content-security-policy']).toMatch(/^default-src 'self';/);
    expect(shell.headers['content-security-policy']).toContain("script-src 'self';");
    expect(shell.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(shell.headers['x-content-type-options']).toBe('nosniff');
    expect(shell.headers['cache-control']).toBe('no-cache');
    const html = shell.body.toString('utf8');
    // Every script is a file of the hub's own; none is written into the page.
    expect(html.match(/<script[^>]*>/g)).toEqual([expect.stringMatching(/^<script defer src="\/assets\/app\.[0-9a-f]{16}\.js">$/)]);
    expect(html).not.toMatch(/https?:\/\//);
  });

  it('serves the hashed script and stylesheet for a year, gzipped when asked, and nothing else under /assets', async () => {
    const html = (await get(`${hub.url}/`)).body.toString('utf8');
    const script = /src="(\/assets\/app\.[0-9a-f]{16}\.js)"/.exec(html)![1]!;
    const style = /href="(\/assets\/app\.[0-9a-f]{16}\.css)"/.exec(html)![1]!;
    const js = await get(`${hub.url}${script}`, { 'accept-encoding': 'gzip' });
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(js.headers['content-encoding']).toBe('gzip');
    const plain = await get(`${hub.url}${script}`);
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(gunzipSync(js.body).equals(plain.body)).toBe(true);
    // uPlot is inside the bundle, not fetched from anywhere.
    expect(plain.body.toString('utf8')).toContain('uplot');
    const css = await get(`${hub.url}${style}`);
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(css.body.toString('utf8')).toContain('.uplot');
    expect((await get(`${hub.url}/assets/app.0000000000000000.js`)).status).toBe(404);
  });

  it('keeps the data behind the login: the API still refuses a request without a session', async () => {
    const devices = await get(`${hub.url}/api/v1/devices`);
    expect(devices.status).toBe(401);
  });

  it('runs from the bundle with the dashboard built in, not built at start', () => {
    const bundle = readFileSync(FLEETLET_BUNDLE, 'utf8');
    expect(bundle).not.toContain('buildDashboardBundle');
    expect(bundle).toContain('fleetlet.loggedIn');
  });
});
