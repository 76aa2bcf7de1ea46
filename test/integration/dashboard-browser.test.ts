import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { chromiumAvailable, collectErrors, launchChromium, screenshot } from '../helpers/browser.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';
import { testKey } from '../fixtures/command-keys.js';
import { rolloutRequest } from '../fixtures/hub-rollout-requests.js';
import { publishAll } from '../helpers/hub-process.js';
import { inventoryPayload, presencePayload, resultPayload, statusPayload, topic } from '../fixtures/hub-messages.js';
import {
  DASHBOARD_PASSWORDS,
  publishEvent,
  publishFleet,
  simulatedFleet,
  startDashboardHub,
  waitForDevices,
  type DashboardHub,
} from '../fixtures/dashboard-fleet.js';

/** The uPlot stroke of the CPU chart's first series (src/hub/dashboard/web/charts.ts). */
const CPU_LINE = [37, 99, 235];
const FLEET = simulatedFleet(12, 40);
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

/** The little of the browser's types these tests use inside the page (the test program has no DOM library). */
interface Canvas {
  width: number;
  height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
}
interface BrowserGlobals {
  document: { documentElement: { scrollWidth: number } };
}

/**
 * The dashboard as an operator uses it: the hub (the bundle the binary embeds) with a real mosquitto, devices
 * simulated through that broker, and Debian's chromium logging in, filtering, opening a device and watching one
 * go offline. Every page must load without a console error; screenshots land in test-results/screenshots.
 */
describe.skipIf(!mosquittoAvailable() || !chromiumAvailable())('the hub dashboard in chromium', () => {
  let broker: TestBroker;
  let dir: { dir: string; cleanup: () => void };
  let hub: DashboardHub;
  let browser: Browser;

  beforeAll(async () => {
    broker = await startMosquitto();
    dir = tempDir('fleetlet-dashboard-');
    hub = await startDashboardHub(dir.dir, broker.url);
    await publishFleet(hub.publisher, FLEET);
    await publishEvent(hub.publisher, 'pi-0001', { kind: 'k3s.crash-loop', key: undefined, state: 'raised', severity: 'critical', message: 'k3s agent keeps exiting soon after start', remedy: 'read the last lines of fleetlet k3s logs', detail: undefined, occurredAt: new Date().toISOString() });
    await publishAll(hub.publisher, [
      {
        topic: topic('pi-0001', 'results'),
        payload: resultPayload('pi-0001', { commandId: 'c-logs-1', type: 'logs.collect', status: 'progress', step: 'logs', reason: undefined, detail: 'k3s chunk 1', data: { source: 'k3s', chunk: 1, lines: ['E1130 kubelet.go:1566] Failed to start ContainerManager', 'I1130 server.go:300] retrying'] } }),
      },
    ]);
    await waitForDevices(hub, FLEET.length);
    // pi-0003's id is answered by two machines in turn: the hub raises an identity conflict for a person to clear.
    // Each inventory is awaited: the hub's connections share the subscription, so two in flight may commit in any order.
    for (const [machine, minutesAgo] of [['sha256:clone', 30], ['sha256:pi-0003', 20]] as const) {
      const collectedAt = new Date(Date.now() - minutesAgo * 60_000);
      await publishAll(hub.publisher, [{ topic: topic('pi-0003', 'inventory'), payload: inventoryPayload('pi-0003', machine, collectedAt), retain: true }]);
      await waitFor(async () => (await api('/api/v1/devices/pi-0003')).inventory?.collectedAt === collectedAt.toISOString(), `the inventory of ${machine}`, 30_000);
    }
    await waitFor(async () => (await api('/api/v1/devices/pi-0003')).identityConflict === true, 'the identity conflict of pi-0003', 30_000);
    await waitFor(async () => (await api('/api/v1/events?device=pi-0001')).events.length > 0, 'the event of pi-0001', 30_000);
    await waitFor(async () => (await api('/api/v1/results?device=pi-0001')).results.length > 0, 'the result of pi-0001', 30_000);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await hub?.stop();
    await broker?.close();
    dir?.cleanup();
  });

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async function api(path: string): Promise<any> {
    const res = await fetch(`${hub.url}${path}`, { headers: { authorization: `Bearer ${hub.token}` } });
    return res.json();
  }

  async function loggedIn(
    user: 'ops' | 'viewer',
    viewport = DESKTOP,
    colorScheme: 'light' | 'dark' = 'light',
    loginShot?: string,
  ): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
    const context = await browser.newContext({ viewport, colorScheme });
    const page = await context.newPage();
    const errors = collectErrors(page);
    await page.goto(hub.url);
    if (loginShot) await screenshot(page, loginShot);
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(DASHBOARD_PASSWORDS[user]);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('.fleet-page[data-loaded="true"]').waitFor({ timeout: 20_000 });
    return { context, page, errors };
  }

  const row = (page: Page, deviceId: string) => page.locator(`.fleet-table a.row[data-device="${deviceId}"]`);

  it('logs in and shows every device with its state, health in words, versions and vitals, and the counts on top', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    const errors = collectErrors(page);
    await page.goto(hub.url);
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    await screenshot(page, 'login-1280');
    await context.close();

    const session = await loggedIn('ops');
    const fleet = session.page;
    await expect.poll(() => fleet.locator('.fleet-table a.row').count()).toBe(FLEET.length);
    const counts = await fleet.locator('.counts').innerText();
    expect(counts).toMatch(/12\s+devices/);
    expect(counts).toMatch(/11\s+online/);
    expect(counts).toMatch(/1\s+offline/);
    expect(counts).toMatch(/3\s+on 0\.0\.9/);
    const first = await row(fleet, 'pi-0001').innerText();
    expect(first).toContain('Device 1');
    expect(first).toContain('online');
    expect(first).toContain('0.0.9');
    expect(first).toMatch(/\d+ %/);
    // The offline device says so in words and for how long, not only in grey.
    expect(await row(fleet, 'pi-0010').locator('.c-state').innerText()).toMatch(/^offline \d+ (s|min|h)/);
    expect(await row(fleet, 'pi-0002').locator('.c-health .badge').innerText()).toBe('ok');
    await screenshot(fleet, 'fleet-1280');
    expect([...errors, ...session.errors]).toEqual([]);
    await session.context.close();
  });

  it('filters by state and searches by label without asking the hub again', async () => {
    const { context, page, errors } = await loggedIn('ops');
    await page.getByLabel('State').selectOption('offline');
    await expect.poll(() => page.locator('.fleet-table a.row').count()).toBe(1);
    expect(await page.locator('.fleet-table a.row').getAttribute('data-device')).toBe('pi-0010');
    await page.getByLabel('State').selectOption('');
    await page.getByLabel('Search devices').fill('site=north');
    const north = FLEET.filter((d) => d.site === 'north').map((d) => d.id);
    await expect.poll(async () => (await page.locator('.fleet-table a.row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-device')))).sort()).toEqual(north);
    await page.getByRole('button', { name: 'Temp.' }).click();
    expect(await page.locator('[role="columnheader"][aria-sort="ascending"]').innerText()).toContain('Temp.');
    expect(errors).toEqual([]);
    await context.close();
  });

  it('opens a device and draws its CPU chart from the hub history, with its events and their remedies and its collected logs', async () => {
    const { context, page, errors } = await loggedIn('ops');
    await row(page, 'pi-0001').click();
    await page.locator('figure.chart[data-chart="CPU"] canvas').waitFor({ timeout: 20_000 });
    expect(Number(await page.locator('figure.chart[data-chart="CPU"]').getAttribute('data-points'))).toBeGreaterThanOrEqual(30);
    // The line itself, not only axes and grid: pixels of the series colour on the chart's canvas.
    const linePixels = await page.locator('figure.chart[data-chart="CPU"] canvas').evaluate((element, colour: number[]) => {
      const canvas = element as unknown as Canvas;
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i]! - colour[0]!) < 12 && Math.abs(data[i + 1]! - colour[1]!) < 12 && Math.abs(data[i + 2]! - colour[2]!) < 12 && data[i + 3]! > 200) n += 1;
      }
      return n;
    }, CPU_LINE);
    expect(linePixels).toBeGreaterThan(100);
    const events = await page.locator('.timeline').innerText();
    expect(events).toContain('k3s.crash-loop');
    expect(events).toContain('What to do: read the last lines of fleetlet k3s logs');
    expect(await page.locator('.device-identity').innerText()).toContain('sha256:pi-0001');
    // Collected logs, one chunk of them, behind a disclosure.
    const results = page.locator('.results');
    expect(await results.innerText()).toContain('logs.collect');
    await results.getByText('2 log line(s) from k3s').click();
    expect(await results.locator('pre.log').innerText()).toContain('Failed to start ContainerManager');
    await screenshot(page, 'device-1280');
    expect(errors).toEqual([]);
    await context.close();
  });

  it('shows a device going offline and another reporting new figures live, without a reload', async () => {
    const { context, page, errors } = await loggedIn('ops');
    expect(await row(page, 'pi-0002').locator('.c-state').innerText()).toBe('online');
    await page.evaluate(() => ((globalThis as unknown as { notReloaded: boolean }).notReloaded = true));
    await publishAll(hub.publisher, [{ topic: topic('pi-0002', 'presence'), payload: presencePayload('offline', 1, new Date(), 'connection-lost'), retain: true }]);
    await expect.poll(() => row(page, 'pi-0002').locator('.c-state').innerText(), { timeout: 20_000 }).toMatch(/^offline/);
    expect(await page.locator('.counts').innerText()).toMatch(/2\s+offline/);
    // A report brings the device's new figures too.
    await publishAll(hub.publisher, [{ topic: topic('pi-0005', 'status'), payload: statusPayload({ seq: 1000, sampledAt: new Date().toISOString(), cpu: { percent: 97 } }) }]);
    await expect.poll(() => row(page, 'pi-0005').locator('.c-num').first().innerText(), { timeout: 20_000 }).toBe('97 %');
    expect(await page.evaluate(() => (globalThis as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
    expect(errors).toEqual([]);
    await context.close();
  });

  it('shows an operator the control to clear an identity conflict, and a viewer only the conflict', async () => {
    const operator = await loggedIn('ops');
    await operator.page.goto(`${hub.url}/#/devices/pi-0003`);
    await operator.page.getByText(/Identity conflict since/).waitFor();
    expect(await operator.page.getByRole('button', { name: 'Clear identity conflict' }).count()).toBe(1);
    const viewer = await loggedIn('viewer');
    await viewer.page.goto(`${hub.url}/#/devices/pi-0003`);
    await viewer.page.getByText(/Identity conflict since/).waitFor();
    expect(await viewer.page.getByRole('button', { name: 'Clear identity conflict' }).count()).toBe(0);
    expect(await viewer.page.locator('header .who').innerText()).toBe('viewer (viewer)');
    expect([...operator.errors, ...viewer.errors]).toEqual([]);
    await operator.context.close();
    await viewer.context.close();
  });

  it("lists the hub's open alerts with their remedies: the crash loop and the identity conflict the fleet reported", async () => {
    await waitFor(async () => (await api('/api/v1/alerts?state=open')).alerts.length >= 2, 'the alert engine to open the alerts', 40_000);
    const { context, page, errors } = await loggedIn('viewer');
    await page.getByRole('link', { name: 'Alerts' }).click();
    const open = page.locator('.alerts-page table').first();
    await expect.poll(() => open.innerText(), { timeout: 20_000 }).toContain('k3s-crash-loop');
    const crashLoop = open.locator('tr', { hasText: 'k3s-crash-loop' });
    expect(await crashLoop.innerText()).toContain('pi-0001');
    expect(await crashLoop.locator('.remedy').innerText()).toMatch(/^What to do: /);
    expect(await open.locator('tr', { hasText: 'identity-conflict' }).innerText()).toContain('pi-0003');
    await screenshot(page, 'alerts-1280');
    expect(errors).toEqual([]);
    await context.close();
  });

  it('shows a rollout the operator started, its batches and devices, and aborts it from the page (an operator only)', async () => {
    const viewer = await loggedIn('viewer');
    const { context, page, errors } = await loggedIn('ops');
    await page.getByRole('link', { name: 'Rollouts' }).click();
    await page.locator('.rollouts-page').getByText('No rollouts.').waitFor({ timeout: 20_000 });
    // Started as `fleet rollout --hub` does: one command signed per device; these devices never answer, so it runs on.
    const request = rolloutRequest(testKey('ops'), [['pi-0001'], ['pi-0002', 'pi-0004']], { deviceTimeoutSeconds: 3600, description: 'k3s to v1.36.3+k3s1 (dashboard test)' });
    const created = await fetch(`${hub.url}/api/v1/rollouts`, { method: 'POST', headers: { authorization: `Bearer ${hub.token}`, 'content-type': 'application/json' }, body: JSON.stringify(request) });
    expect(created.status).toBe(201);
    const link = page.getByRole('link', { name: request.rolloutId });
    await link.waitFor({ timeout: 20_000 });
    expect(await page.locator('.rollouts-page tr', { hasText: request.rolloutId }).innerText()).toMatch(/running/);
    await link.click();
    await expect.poll(() => page.locator('.rollouts-page').innerText(), { timeout: 20_000 }).toContain('pi-0001');
    // Batches not running are folded; opening one shows its devices, still pending.
    expect(await page.locator('.rollouts-page').innerText()).not.toContain('pi-0004');
    await page.getByText('Batch 2: waiting, 2 device(s)').click();
    expect(await page.locator('.rollouts-page tr', { hasText: 'pi-0004' }).innerText()).toContain('pending');
    await screenshot(page, 'rollout-1280');

    // A viewer sees the same rollout without its controls.
    await viewer.page.goto(`${hub.url}/#/rollouts/${request.rolloutId}`);
    await expect.poll(() => viewer.page.locator('.rollouts-page').innerText(), { timeout: 20_000 }).toContain('pi-0001');
    expect(await viewer.page.getByRole('button', { name: 'Abort' }).count()).toBe(0);

    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Abort' }).click();
    await waitFor(async () => (await api(`/api/v1/rollouts/${request.rolloutId}`)).state === 'aborted', 'the rollout aborted', 20_000);
    await expect.poll(() => page.locator('.rollouts-page').innerText(), { timeout: 20_000 }).toMatch(/aborted/);
    expect((await api('/api/v1/audit')).entries.map((e: { action: string }) => e.action)).toContain('rollout.abort');
    expect(errors).toEqual([]);
    expect(viewer.errors).toEqual([]);
    await context.close();
    await viewer.context.close();
  });

  it('fits a phone: the fleet and a device page at 390 px without a horizontal scroll bar', async () => {
    const { context, page, errors } = await loggedIn('ops', PHONE, 'light', 'login-390');
    expect(await page.evaluate(() => (globalThis as unknown as BrowserGlobals).document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await screenshot(page, 'fleet-390');
    await row(page, 'pi-0001').click();
    await page.locator('figure.chart[data-chart="CPU"] canvas').waitFor({ timeout: 20_000 });
    expect(await page.evaluate(() => (globalThis as unknown as BrowserGlobals).document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await screenshot(page, 'device-390');
    expect(errors).toEqual([]);
    await context.close();
  });

  it('follows a dark system setting: light text on a dark page, health still in words', async () => {
    const { context, page, errors } = await loggedIn('ops', DESKTOP, 'dark');
    // In the page's own terms (the test program has no DOM types).
    const colours = (await page.evaluate('({ page: getComputedStyle(document.body).backgroundColor, text: getComputedStyle(document.body).color })')) as {
      page: string;
      text: string;
    };
    const luminance = (rgb: string) => rgb.match(/\d+/g)!.slice(0, 3).map(Number).reduce((a, b) => a + b, 0) / 3;
    expect(luminance(colours.page)).toBeLessThan(60);
    expect(luminance(colours.text)).toBeGreaterThan(180);
    expect(await row(page, 'pi-0001').locator('.c-health .badge').innerText()).toBe('critical');
    await screenshot(page, 'fleet-1280-dark');
    expect(errors).toEqual([]);
    await context.close();
  });
});
