import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { HubAlertsSection, type HubAlertsConfig } from '../../src/config/hub-alerts-schema.js';
import { AlertEngine } from '../../src/hub/alerts/engine.js';
import { openHubDatabase, type HubDatabase } from '../../src/hub/db/open.js';
import { startHub, type RunningHub } from '../../src/hub/hub-service.js';
import { createLogger } from '../../src/lib/logger.js';
import type { Status } from '../../src/protocol/status.js';
import { bundleFixture } from '../helpers/bundle-fixture.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { connectPublisher, publishAll } from '../helpers/hub-process.js';
import { startTestBroker, type TestBroker } from '../helpers/mosquitto.js';
import { hubDialects } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { eventPayload, inventoryPayload, presencePayload, statusPayload, topic, TOPIC_ROOT } from '../fixtures/hub-messages.js';
import type { MqttClient } from 'mqtt';

const MINUTE = 60_000;
const CHILD_BUNDLE = join(REPO_ROOT, 'dist/alert-engine-child.cjs');
const silent = createLogger({ level: 'silent' });

/** The engine over the ingest's database, on a clock the test moves (the device's messages carry real times). */
function engineOn(hub: HubDatabase, alerts: Partial<Record<keyof HubAlertsConfig, unknown>> = {}) {
  let offsetMs = 0;
  const engine = new AlertEngine({ hub, config: HubAlertsSection.parse(alerts), log: silent, now: () => Date.now() + offsetMs });
  return { engine, advance: (ms: number) => (offsetMs = ms) };
}

async function alertsOf(hub: HubDatabase, rule: string) {
  return hub.db.selectFrom('alerts').selectAll().where('rule', '=', rule).orderBy('id').execute();
}

describe.each(hubDialects())('hub alert rules on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  let broker: TestBroker;
  let running: RunningHub;
  let hub: HubDatabase;
  let publisher: MqttClient;
  const scratch = tempDir('fleetlet-hub-alerts-');

  beforeAll(async () => {
    await bundleFixture('alert-engine-child.ts', CHILD_BUNDLE);
    broker = await startTestBroker();
    const where = await databases.fresh();
    const config = ConfigSchema.parse({
      broker: { url: broker.url, allowPlaintext: true, topicRoot: TOPIC_ROOT },
      hub: { replicaId: `alerts-${dialect}`, shareGroup: `alerts-${dialect}`, connections: 2, database: where },
    });
    running = await startHub({ config, log: silent });
    await running.ready();
    hub = running.database;
    publisher = await connectPublisher(broker.url, `alerts-device-side-${dialect}`);
  });
  afterAll(async () => {
    await publisher?.endAsync();
    await running?.stop();
    await broker?.close();
    await databases.close();
    scratch.cleanup();
  });

  /** Publishes through the broker and waits until the ingest committed it (by a check on the database). */
  const send = async (deviceId: string, channel: string, payload: unknown, committed: () => Promise<boolean>) => {
    await publishAll(publisher, [{ topic: topic(deviceId, channel), payload }]);
    await waitFor(committed, `the hub to store ${channel} of ${deviceId}`);
  };
  const device = (id: string) => hub.db.selectFrom('devices').selectAll().where('device_id', '=', id).executeTakeFirst();
  const status = (id: string, overrides: Partial<Status>) => {
    const payload = statusPayload({ sampledAt: new Date().toISOString(), ...overrides });
    return send(id, 'status', payload, async () => (await device(id))?.status_sampled_at_ms === Date.parse(payload.sampledAt));
  };
  const event = (id: string, kind: string, occurredAt = new Date()) => {
    const payload = eventPayload({ kind, state: 'occurred', severity: 'critical', message: `${kind} happened`, occurredAt: occurredAt.toISOString() });
    return send(id, 'events', payload, async () =>
      (await hub.db.selectFrom('events').select('id').where('message_id', '=', payload.messageId!).executeTakeFirst()) !== undefined,
    );
  };

  it('device offline: opens once after N minutes, updates while it lasts, resolves when the device returns, opens anew next time', async () => {
    const { engine, advance } = engineOn(hub, { offline: { afterMinutes: 10 } });
    const wentAt = new Date();
    await send('pi-off', 'presence', presencePayload('offline', 4, wentAt, 'connection-lost'), async () => (await device('pi-off'))?.presence_state === 'offline');

    advance(5 * MINUTE);
    await engine.evaluate();
    expect(await alertsOf(hub, 'device-offline')).toEqual([]);

    advance(11 * MINUTE);
    expect(await engine.evaluate()).toMatchObject({ opened: 1 });
    advance(11 * MINUTE + 10_000);
    expect(await engine.evaluate()).toEqual({ opened: 0, updated: 0, resolved: 0 });
    let [alert] = await alertsOf(hub, 'device-offline');
    expect(alert).toMatchObject({ subject: 'pi-off', device_id: 'pi-off', state: 'open', severity: 'warning', summary: 'offline for 11 minutes' });
    const openedAt = alert!.opened_at_ms;

    advance(13 * MINUTE);
    expect(await engine.evaluate()).toMatchObject({ opened: 0, updated: 1 });
    [alert] = await alertsOf(hub, 'device-offline');
    expect(alert).toMatchObject({ state: 'open', summary: 'offline for 13 minutes', opened_at_ms: openedAt });
    expect(alert!.updated_at_ms).toBeGreaterThan(openedAt);
    expect(JSON.parse(alert!.details_json)).toMatchObject({ minutesOffline: 13, offlineSince: wentAt.toISOString(), reason: 'connection-lost' });

    await send('pi-off', 'presence', presencePayload('online', 5, new Date(wentAt.getTime() + 1000)), async () => (await device('pi-off'))?.presence_state === 'online');
    expect(await engine.evaluate()).toMatchObject({ resolved: 1 });
    [alert] = await alertsOf(hub, 'device-offline');
    expect(alert).toMatchObject({ state: 'resolved' });
    expect(alert!.resolved_at_ms).not.toBeNull();

    await send('pi-off', 'presence', presencePayload('offline', 5, new Date(wentAt.getTime() + 2000), 'stopped'), async () => (await device('pi-off'))?.presence_state === 'offline');
    advance(30 * MINUTE);
    expect(await engine.evaluate()).toMatchObject({ opened: 1 });
    const all = await alertsOf(hub, 'device-offline');
    expect(all.map((a) => a.state)).toEqual(['resolved', 'open']);
    expect(all[1]!.id).not.toBe(all[0]!.id);
  });

  it('k3s crash loop and a rejected node password open from their events and resolve when k3s is up again', async () => {
    const { engine } = engineOn(hub);
    await event('pi-loop', 'k3s.crash-loop');
    await event('pi-pass', 'k3s.password-rejected');
    await engine.evaluate();
    const [loop] = await alertsOf(hub, 'k3s-crash-loop');
    expect(loop).toMatchObject({ subject: 'pi-loop', state: 'open', severity: 'critical', summary: 'k3s.crash-loop happened' });
    expect(loop!.remedy).toContain('fleetlet k3s logs');
    const [rejected] = await alertsOf(hub, 'credential-rejected');
    expect(rejected).toMatchObject({ subject: 'pi-pass', state: 'open', summary: 'the server rejected the node password' });

    await event('pi-loop', 'k3s.up', new Date(Date.now() + 1000));
    expect(await engine.evaluate()).toMatchObject({ resolved: 1 });
    expect((await alertsOf(hub, 'k3s-crash-loop'))[0]).toMatchObject({ state: 'resolved' });
    expect((await alertsOf(hub, 'credential-rejected'))[0]).toMatchObject({ state: 'open' });
  });

  it('a crash loop older than its window does not alert', async () => {
    const { engine, advance } = engineOn(hub, { crashLoop: { windowMinutes: 30 } });
    await event('pi-old-loop', 'k3s.crash-loop');
    advance(31 * MINUTE);
    await engine.evaluate();
    expect((await alertsOf(hub, 'k3s-crash-loop')).filter((a) => a.subject === 'pi-old-loop')).toEqual([]);
  });

  it('disk low, temperature high and under-voltage open from the status over their thresholds and resolve below them', async () => {
    const { engine } = engineOn(hub, { diskLow: { minFreePercent: 10 }, temperatureHigh: { aboveC: 80 } });
    const total = 32_000_000_000;
    await status('pi-hot', {
      sampledAt: new Date(Date.now() - 2000).toISOString(),
      disks: [
        { name: 'state', totalBytes: total, freeBytes: total / 2 },
        { name: 'k3s', totalBytes: total, freeBytes: total * 0.05 },
      ],
      temperatureC: 84.6,
      throttle: { bits: 0x50005, now: ['under-voltage'], occurred: ['under-voltage'] },
    });
    // Just under every threshold: no alert.
    await status('pi-cool', {
      disks: [{ name: 'k3s', totalBytes: total, freeBytes: total * 0.11 }],
      temperatureC: 79.9,
      throttle: { bits: 0, now: [], occurred: [] },
    });
    await engine.evaluate();
    const open = async (rule: string) => (await alertsOf(hub, rule)).filter((a) => a.state === 'open').map((a) => a.subject);
    expect(await open('disk-low')).toEqual(['pi-hot']);
    expect(await open('temperature-high')).toEqual(['pi-hot']);
    expect(await open('under-voltage')).toEqual(['pi-hot']);
    const [disk] = await alertsOf(hub, 'disk-low');
    expect(disk!.summary).toBe('filesystem k3s has 5% free (alert below 10%)');
    expect(JSON.parse(disk!.details_json)).toMatchObject({ disk: 'k3s', freePercent: 5 });
    expect((await alertsOf(hub, 'temperature-high'))[0]!.summary).toBe('SoC at 85 °C (alert at 80 °C)');

    await status('pi-hot', { disks: [{ name: 'k3s', totalBytes: total, freeBytes: total * 0.3 }], temperatureC: 60, throttle: { bits: 0x50000, now: [], occurred: ['under-voltage'] } });
    expect(await engine.evaluate()).toMatchObject({ resolved: 3 });
    for (const rule of ['disk-low', 'temperature-high', 'under-voltage']) expect(await open(rule)).toEqual([]);
  });

  it('temperature and disk do not flap at their line: an open alert resolves only past the clear margin', async () => {
    const { engine } = engineOn(hub, { diskLow: { minFreePercent: 10, clearMarginPercent: 2 }, temperatureHigh: { aboveC: 80, clearMarginC: 5 } });
    const total = 10_000_000_000;
    const report = (temperatureC: number, freePercent: number) =>
      status('pi-edge', { temperatureC, disks: [{ name: 'state', totalBytes: total, freeBytes: (total * freePercent) / 100 }] });
    const state = async () => {
      await engine.evaluate();
      const states = async (rule: string) => (await alertsOf(hub, rule)).filter((a) => a.subject === 'pi-edge').map((a) => a.state);
      return [await states('temperature-high'), await states('disk-low')];
    };
    await report(79, 11);
    expect(await state()).toEqual([[], []]);
    await report(80.5, 9.5);
    expect(await state()).toEqual([['open'], ['open']]);
    await report(76, 11.5); // back under the line, not past the margin
    expect(await state()).toEqual([['open'], ['open']]);
    await report(74.9, 12.5);
    expect(await state()).toEqual([['resolved'], ['resolved']]);
  });

  it('outbox backlog: alerts when the backlog stayed above the minimum and grew over the window, resolves when it drains', async () => {
    const { engine } = engineOn(hub, { outboxBacklog: { minMessages: 1000, risingMinutes: 15 } });
    const depth = (status: number) => ({ depth: { status, event: 0, result: 0 }, dropped: { status: 0, event: 0, result: 0 } });
    const now = Date.now();
    await status('pi-slow', { sampledAt: new Date(now - 20 * MINUTE).toISOString(), outbox: depth(1500) });
    await engine.evaluate();
    await status('pi-slow', { sampledAt: new Date(now - 10 * MINUTE).toISOString(), outbox: depth(2200) });
    await engine.evaluate();
    expect(await alertsOf(hub, 'outbox-backlog')).toEqual([]);
    await status('pi-slow', { sampledAt: new Date(now).toISOString(), outbox: depth(3100) });
    await engine.evaluate();
    const [alert] = await alertsOf(hub, 'outbox-backlog');
    expect(alert).toMatchObject({ subject: 'pi-slow', state: 'open', summary: 'outbox backlog of 3100 messages, up from 1500 over 20 minutes' });

    // Drained below the start of the rise: the trend ends, the alert resolves.
    await status('pi-slow', { sampledAt: new Date(now + 1000).toISOString(), outbox: depth(1200) });
    await engine.evaluate();
    expect((await alertsOf(hub, 'outbox-backlog'))[0]).toMatchObject({ state: 'resolved' });
  });

  it('a large backlog that does not grow does not alert', async () => {
    const { engine } = engineOn(hub, { outboxBacklog: { minMessages: 1000, risingMinutes: 15 } });
    const depth = { depth: { status: 5000, event: 0, result: 0 }, dropped: { status: 0, event: 0, result: 0 } };
    const now = Date.now();
    await status('pi-steady', { sampledAt: new Date(now - 30 * MINUTE).toISOString(), outbox: depth });
    await engine.evaluate();
    await status('pi-steady', { sampledAt: new Date(now).toISOString(), outbox: depth });
    await engine.evaluate();
    expect((await alertsOf(hub, 'outbox-backlog')).filter((a) => a.subject === 'pi-steady')).toEqual([]);
  });

  it('identity conflict: opens when the ingest flags a device id shown by two machines, resolves when a person clears the flag', async () => {
    const { engine } = engineOn(hub);
    const t = Date.now();
    for (const [i, machine] of ['sha256:aaaa', 'sha256:bbbb', 'sha256:aaaa'].entries()) {
      const at = new Date(t + i * 1000);
      await send('pi-clone', 'inventory', inventoryPayload('pi-clone', machine, at), async () => (await device('pi-clone'))?.inventory_at_ms === at.getTime());
    }
    expect((await device('pi-clone'))?.identity_conflict).toBe(1);
    await engine.evaluate();
    expect(await alertsOf(hub, 'identity-conflict')).toMatchObject([{ subject: 'pi-clone', state: 'open', severity: 'critical' }]);
    await hub.db.updateTable('devices').set({ identity_conflict: 0 }).where('device_id', '=', 'pi-clone').execute();
    await engine.evaluate();
    expect(await alertsOf(hub, 'identity-conflict')).toMatchObject([{ state: 'resolved' }]);
  });

  it('two replicas (two processes) evaluating the same database at once open an alert once and queue one delivery per webhook', async () => {
    const where = await databases.fresh();
    const db = await openHubDatabase(where);
    const go = join(scratch.dir, `go-${dialect}`);
    const webhooks = [{ name: 'ops', url: 'http://127.0.0.1:9/hook', secretFile: '/nonexistent' }];
    const replicas = () =>
      [1, 2].map(() => {
        const child = spawn(process.execPath, [CHILD_BUNDLE], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { PATH: process.env.PATH, ALERT_DB: JSON.stringify(where), ALERT_GO: go, ALERT_CONFIG: JSON.stringify({ webhooks }) },
        });
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
        const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
        return { ready: () => waitFor(() => out.includes('ready'), () => `a replica to open the database: ${out}`), exited, output: () => out };
      });
    const race = async () => {
      rmSync(go, { force: true });
      const both = replicas();
      for (const replica of both) await replica.ready();
      writeFileSync(go, '');
      for (const replica of both) expect({ code: await replica.exited, output: replica.output() }).toMatchObject({ code: 0 });
    };
    try {
      const now = Date.now();
      await db.db
        .insertInto('devices')
        .values({ device_id: 'pi-x', first_seen_ms: now, last_seen_ms: now, presence_state: 'offline', presence_at_ms: now - 20 * MINUTE, health: 'ok', identity_conflict: 0 })
        .execute();
      await race();
      expect(await alertsOf(db, 'device-offline')).toMatchObject([{ subject: 'pi-x', state: 'open' }]);
      await db.db.updateTable('devices').set({ presence_state: 'online', presence_at_ms: now }).where('device_id', '=', 'pi-x').execute();
      await race();
      expect(await alertsOf(db, 'device-offline')).toMatchObject([{ subject: 'pi-x', state: 'resolved' }]);
      const deliveries = await db.db.selectFrom('alert_deliveries').select(['webhook', 'event']).orderBy('id').execute();
      expect(deliveries).toEqual([
        { webhook: 'ops', event: 'opened' },
        { webhook: 'ops', event: 'resolved' },
      ]);
    } finally {
      await db.close();
    }
  });

  it('report(): opens, updates and resolves an alert of an outside subject, which evaluation leaves alone', async () => {
    const { engine } = engineOn(hub, { delivery: { updateEveryMinutes: 0.01 } });
    const halted = { rule: 'rollout-halted' as const, subject: 'rollout:r-1', rolloutId: 'r-1', active: true };
    expect(await engine.report({ ...halted, summary: '3 of 20 devices failed (threshold 2)', details: { failed: 3 } })).toBe('opened');
    expect(await engine.report({ ...halted, summary: '3 of 20 devices failed (threshold 2)', details: { failed: 3 } })).toBeNull();
    await engine.evaluate();
    expect(await engine.report({ ...halted, summary: '4 of 20 devices failed (threshold 2)', details: { failed: 4 } })).toBe('updated');
    expect(await alertsOf(hub, 'rollout-halted')).toMatchObject([
      { subject: 'rollout:r-1', rollout_id: 'r-1', device_id: null, state: 'open', severity: 'critical', summary: '4 of 20 devices failed (threshold 2)', details_json: '{"failed":4}' },
    ]);
    expect(await engine.report({ ...halted, active: false, summary: 'resumed' })).toBe('resolved');
    expect(await engine.report({ ...halted, active: false, summary: 'resumed' })).toBeNull();
    expect(await engine.report({ rule: 'certificate-expiring', subject: 'pi-a', deviceId: 'pi-a', active: true, severity: 'warning', summary: 'expires in 6 days' })).toBe('opened');
    expect(await engine.report({ ...halted, summary: 'halted again' })).toBe('opened');
    expect((await alertsOf(hub, 'rollout-halted')).map((a) => a.state)).toEqual(['resolved', 'open']);
  });

  it('prunes resolved alerts and their deliveries after keepResolvedDays; open ones stay', async () => {
    const db = await databases.open();
    try {
      const webhooks = [{ name: 'ops', url: 'http://127.0.0.1:9/hook', secretFile: '/nonexistent' }];
      const { engine, advance } = engineOn(db, { keepResolvedDays: 90, webhooks });
      await engine.report({ rule: 'rollout-halted', subject: 'rollout:old', active: true, summary: 'halted' });
      await engine.report({ rule: 'rollout-halted', subject: 'rollout:old', active: false, summary: 'halted' });
      await engine.report({ rule: 'rollout-halted', subject: 'rollout:open', active: true, summary: 'halted' });
      advance(89 * 24 * 60 * MINUTE);
      await engine.evaluate();
      expect(await alertsOf(db, 'rollout-halted')).toHaveLength(2);
      const later = engineOn(db, { keepResolvedDays: 90, webhooks });
      later.advance(91 * 24 * 60 * MINUTE);
      await later.engine.evaluate();
      expect((await alertsOf(db, 'rollout-halted')).map((a) => a.subject)).toEqual(['rollout:open']);
      expect(await db.db.selectFrom('alert_deliveries').select('event').execute()).toEqual([{ event: 'opened' }]);
    } finally {
      await db.close();
    }
  });
});
