// The hub's dashboard with a fleet of simulated devices (default 2,000) in Debian's chromium: time to the first
// drawn rows of the fleet page, beside the API's device list fetched alone by the same page (the floor any page
// reading it has), the time a search takes to redraw, and the gzip bytes of what a browser downloads. Run by
// `npm run bench:hub` after the ingest figures, or alone: `npx tsx scripts/bench-dashboard.ts --devices N`.
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { chromium } from 'playwright-core';
import { CHROMIUM } from '../test/helpers/browser.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { tempDir } from '../test/helpers/paths.js';
import { DASHBOARD_PASSWORDS, publishFleet, simulatedFleet, startDashboardHub, waitForDevices } from '../test/fixtures/dashboard-fleet.js';

const RUNS = 5;

export async function benchDashboard(devices: number): Promise<void> {
  // The hub runs from the bundle, as the binary runs it (with the dashboard built in).
  execFileSync(process.execPath, ['scripts/bundle.mjs'], { stdio: 'inherit' });
  const broker = await startMosquitto();
  const dir = tempDir('fleetlet-bench-dashboard-');
  const hub = await startDashboardHub(dir.dir, broker.url);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  try {
    await publishFleet(hub.publisher, simulatedFleet(devices));
    await waitForDevices(hub, devices, 300_000);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const login = await context.newPage();
    await login.goto(hub.url);
    await login.getByLabel('User name').fill('ops');
    await login.getByLabel('Password').fill(DASHBOARD_PASSWORDS.ops);
    await login.getByRole('button', { name: 'Log in' }).click();
    await login.locator('.fleet-page[data-loaded="true"]').waitFor({ timeout: 60_000 });
    await login.close();

    const firstRender: number[] = [];
    const apiAlone: number[] = [];
    const search: number[] = [];
    for (let run = 0; run < RUNS; run += 1) {
      const page = await context.newPage();
      await page.goto(hub.url);
      await page.locator('.fleet-page[data-loaded="true"] .fleet-table a.row').first().waitFor({ timeout: 60_000 });
      // Milliseconds from the start of the navigation to the rows drawn (the page marks `loaded` after drawing).
      firstRender.push(await page.evaluate(() => performance.now()));
      apiAlone.push(
        await page.evaluate(async (total) => {
          const start = performance.now();
          await Promise.all(Array.from({ length: Math.ceil(total / 500) }, (_, i) => fetch(`/api/v1/devices?limit=500&offset=${i * 500}`).then((r) => r.json())));
          return performance.now() - start;
        }, devices),
      );
      // In the page's own terms (this script's program has no DOM types): type, then two frames for the redraw.
      search.push(
        (await page.evaluate(`(async () => {
          const input = document.querySelector('input[type="search"]');
          const start = performance.now();
          input.value = 'site=north';
          input.dispatchEvent(new Event('input'));
          await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
          return performance.now() - start;
        })()`)) as number,
      );
      await page.close();
    }
    const sizes = await assetSizes(hub.url);
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    console.log(`\ndashboard: ${devices} devices, chromium headless at 1280x900, median of ${RUNS} loads`);
    console.log('| measure | median ms | min ms | max ms |');
    console.log('| --- | --- | --- | --- |');
    for (const [name, values] of [
      ['fleet page: navigation to first rows drawn', firstRender],
      ['baseline: the device list from the API alone, in the page', apiAlone],
      ['search "site=north": filter and redraw', search],
    ] as const) {
      console.log(`| ${name} | ${median(values).toFixed(0)} | ${Math.min(...values).toFixed(0)} | ${Math.max(...values).toFixed(0)} |`);
    }
    console.log('| asset | bytes | gzip bytes |');
    console.log('| --- | --- | --- |');
    for (const size of sizes) console.log(`| ${size.path} | ${size.bytes} | ${size.gzip} |`);
    console.log(`| total | ${sizes.reduce((n, s) => n + s.bytes, 0)} | ${sizes.reduce((n, s) => n + s.gzip, 0)} |`);
  } finally {
    await browser.close();
    await hub.stop();
    await broker.close();
    dir.cleanup();
  }
}

/** What a browser downloads: the shell and the two assets it names, plain and gzipped as the hub serves them. */
async function assetSizes(url: string): Promise<{ path: string; bytes: number; gzip: number }[]> {
  const shell = (await get(`${url}/`, false)).toString('utf8');
  const paths = ['/', ...[...shell.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!)];
  return Promise.all(paths.map(async (path) => ({ path, bytes: (await get(`${url}${path}`, false)).length, gzip: (await get(`${url}${path}`, true)).length })));
}

function get(url: string, gzip: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    request(url, { headers: gzip ? { 'accept-encoding': 'gzip' } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    })
      .on('error', reject)
      .end();
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--devices');
  await benchDashboard(i > 0 ? Number(process.argv[i + 1]) : 2000);
}
