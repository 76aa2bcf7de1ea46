import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HubAlertsSection, type HubAlertsConfig } from '../../src/config/hub-alerts-schema.js';
import { AlertEngine } from '../../src/hub/alerts/engine.js';
import { AlertWebhookSecretError } from '../../src/hub/alerts/errors.js';
import { DELIVERY_COUNTERS, WebhookDeliverer } from '../../src/hub/alerts/webhook-deliverer.js';
import { loadWebhookTargets } from '../../src/hub/alerts/webhook-secrets.js';
import { renderMetrics } from '../../src/hub/api/metrics.js';
import { openHubDatabase, type HubDatabase } from '../../src/hub/db/open.js';
import { createLogger } from '../../src/lib/logger.js';
import { AlertWebhookPayload } from '../../src/protocol/hub-alerts-api.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { connectPublisher, publishAll, startHubProcess, writeHubConfig, type HubProcess } from '../helpers/hub-process.js';
import { startTestBroker, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { hubDialects } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.js';
import { presencePayload, topic } from '../fixtures/hub-messages.js';

const KEY = 'k3y-for-the-receiver-0123456789abcdef';
const silent = createLogger({ level: 'silent' });

describe.each(hubDialects())('hub alert webhooks on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  const dir = tempDir('fleetlet-hub-webhooks-');
  const secretFile = join(dir.dir, 'webhook.key');
  let receiver: WebhookReceiver;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(() => {
    writeFileSync(secretFile, `${KEY}\n`, { mode: 0o600 });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await databases.close();
    dir.cleanup();
  });

  /** An engine to make alert changes and a deliverer to send them, over a fresh database, to a fresh receiver. */
  const setUp = async (delivery: Partial<HubAlertsConfig['delivery']> = {}, rules?: string[], now?: () => number) => {
    receiver = await startWebhookReceiver(KEY);
    const hub = await databases.open();
    const config = HubAlertsSection.parse({
      webhooks: [{ name: 'ops', url: receiver.url, secretFile, ...(rules ? { rules } : {}) }],
      delivery: { firstRetrySeconds: 0.05, maxRetrySeconds: 5, timeoutSeconds: 2, ...delivery },
    });
    const engine = new AlertEngine({ hub, config, log: silent, now });
    const deliverer = new WebhookDeliverer({ hub, targets: loadWebhookTargets(config.webhooks), delivery: config.delivery, log: silent, now });
    cleanups.push(() => receiver.close(), () => hub.close());
    return { hub, engine, deliverer };
  };
  const halted = (active: boolean, summary = 'rollout r-1 halted: 3 of 20 failed') =>
    ({ rule: 'rollout-halted', subject: 'rollout:r-1', rolloutId: 'r-1', active, summary }) as const;
  /** Runs the deliverer until the receiver has `count` requests (a retry waits its backoff in real time). */
  const deliverUntil = async (deliverer: WebhookDeliverer, count: number, timeoutMs = 15_000) =>
    waitFor(async () => (await deliverer.runOnce(), receiver.received.length >= count), () => `${count} webhook requests, got ${receiver.received.length}`, timeoutMs);
  const counter = async (hub: HubDatabase, name: string) =>
    Number((await hub.db.selectFrom('hub_counters').select('value').where('name', '=', name).executeTakeFirst())?.value ?? 0);

  it('delivers each change as signed JSON: a valid HMAC-SHA256 of the raw body, a delivery id, the payload schema', async () => {
    const { engine, deliverer } = await setUp();
    await engine.report(halted(true));
    await engine.report(halted(false));
    await deliverUntil(deliverer, 2);
    const [opened, resolved] = receiver.received.map((r) => ({ ...r, payload: AlertWebhookPayload.parse(JSON.parse(r.body)) }));
    for (const hook of [opened!, resolved!]) {
      expect(hook.signatureValid).toBe(true);
      expect(hook.headers['x-fleetlet-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
      expect(hook.headers['x-fleetlet-delivery']).toBe(hook.payload.deliveryId);
      expect(hook.headers['content-type']).toBe('application/json');
    }
    expect(opened!.payload).toMatchObject({ schemaVersion: 1, event: 'opened', alert: { rule: 'rollout-halted', subject: 'rollout:r-1', state: 'open' } });
    expect(resolved!.payload).toMatchObject({ event: 'resolved', alert: { id: opened!.payload.alert.id, state: 'resolved' } });
    expect(resolved!.payload.deliveryId).not.toBe(opened!.payload.deliveryId);
  });

  it('retries after the receiver answers 500, then stops at its 200: one delivery, sent twice, never again; "resolved" waits for "opened"', async () => {
    const { hub, engine, deliverer } = await setUp();
    receiver.script.push({ status: 500 });
    await engine.report(halted(true));
    await engine.report(halted(false));
    await deliverUntil(deliverer, 3);
    expect(receiver.received.map((r) => [JSON.parse(r.body).event, r.answered])).toEqual([
      ['opened', 500],
      ['opened', 200],
      ['resolved', 200],
    ]);
    expect(receiver.received[0]!.headers['x-fleetlet-delivery']).toBe(receiver.received[1]!.headers['x-fleetlet-delivery']);
    for (let i = 0; i < 5; i++) await deliverer.runOnce();
    expect(receiver.received).toHaveLength(3);
    const rows = await hub.db.selectFrom('alert_deliveries').select(['event', 'state', 'attempts']).orderBy('id').execute();
    expect(rows).toEqual([
      { event: 'opened', state: 'delivered', attempts: 2 },
      { event: 'resolved', state: 'delivered', attempts: 1 },
    ]);
    expect(await counter(hub, DELIVERY_COUNTERS.failedAttempts)).toBe(1);
    expect(await counter(hub, DELIVERY_COUNTERS.delivered)).toBe(2);
  });

  it('two deliverers (two replicas) on one queue send each change once: a delivery is leased before it is sent', async () => {
    const { hub, engine, deliverer } = await setUp();
    const config = HubAlertsSection.parse({ webhooks: [{ name: 'ops', url: receiver.url, secretFile }] });
    const other = new WebhookDeliverer({ hub, targets: loadWebhookTargets(config.webhooks), delivery: config.delivery, log: silent });
    for (let i = 1; i <= 5; i++) await engine.report({ ...halted(true), subject: `rollout:r-${i}` });
    for (let round = 0; round < 3; round++) await Promise.all([deliverer.runOnce(), other.runOnce()]);
    const ids = receiver.received.map((r) => r.headers['x-fleetlet-delivery']);
    expect(ids).toHaveLength(5);
    expect(new Set(ids).size).toBe(5);
  });

  it('waits as long as Retry-After asks before the next attempt', async () => {
    const { engine, deliverer } = await setUp();
    receiver.script.push({ status: 503, headers: { 'retry-after': '2' } });
    await engine.report(halted(true));
    await deliverUntil(deliverer, 2);
    expect(receiver.received[1]!.at - receiver.received[0]!.at).toBeGreaterThanOrEqual(2000);
  });

  it('gives a request up after timeoutSeconds, retries, and reads only a bounded response', async () => {
    const { hub, engine, deliverer } = await setUp({ timeoutSeconds: 0.5 });
    receiver.script.push('hang', { status: 200, body: Buffer.alloc(4 * 1024 * 1024, 'x') });
    await engine.report(halted(true));
    const started = Date.now();
    await deliverUntil(deliverer, 2);
    await waitFor(async () => (await hub.db.selectFrom('alert_deliveries').select('state').executeTakeFirst())?.state === 'delivered', 'the delivery to be marked delivered');
    expect(Date.now() - started).toBeLessThan(10_000);
    const row = await hub.db.selectFrom('alert_deliveries').select(['attempts']).executeTakeFirstOrThrow();
    expect(row.attempts).toBe(2);
  });

  it('gives a delivery up after maxAgeHours and counts it in /metrics', async () => {
    const { hub, engine, deliverer } = await setUp({ maxAgeHours: 0.0005 });
    receiver.otherwise = { status: 500 };
    await engine.report(halted(true));
    await waitFor(async () => (await deliverer.runOnce(), (await hub.db.selectFrom('alert_deliveries').select('state').executeTakeFirst())?.state === 'expired'), 'the delivery to expire');
    const attempts = receiver.received.length;
    expect(attempts).toBeGreaterThanOrEqual(1);
    await deliverer.runOnce();
    expect(receiver.received).toHaveLength(attempts);
    const metrics = await renderMetrics(hub, { requests: new Map(), loginFailures: 0, streamClients: () => 0 }, '', Date.now());
    expect(metrics).toContain(`fleetlet_hub_stored_counter{name="${DELIVERY_COUNTERS.expired}"} 1`);
  });

  it('sends "updated" when the summary changed, at most every updateEveryMinutes', async () => {
    let offsetMs = 0;
    const { engine, deliverer } = await setUp({ updateEveryMinutes: 10 }, undefined, () => Date.now() + offsetMs);
    await engine.report(halted(true, '3 failed'));
    offsetMs = 9 * 60_000;
    await engine.report(halted(true, '4 failed')); // within the spacing: stored, not sent
    offsetMs = 10 * 60_000;
    await engine.report(halted(true, '5 failed'));
    await deliverUntil(deliverer, 2);
    await deliverer.runOnce();
    expect(receiver.received.map((r) => [JSON.parse(r.body).event, JSON.parse(r.body).alert.summary])).toEqual([
      ['opened', '3 failed'],
      ['updated', '5 failed'],
    ]);
  });

  it('sends a webhook only the rules it asked for', async () => {
    const { hub, engine, deliverer } = await setUp({}, ['certificate-expiring']);
    await engine.report(halted(true));
    await engine.report({ rule: 'certificate-expiring', subject: 'pi-a', deviceId: 'pi-a', active: true, summary: 'expires in 5 days', severity: 'warning' });
    await deliverUntil(deliverer, 1);
    await deliverer.runOnce();
    expect(receiver.received.map((r) => JSON.parse(r.body).alert.rule)).toEqual(['certificate-expiring']);
    expect(await hub.db.selectFrom('alert_deliveries').select('webhook').execute()).toHaveLength(1);
  });

  it('refuses a secret file that group or others can read, without printing the key', () => {
    const open = join(dir.dir, 'open.key');
    writeFileSync(open, KEY);
    chmodSync(open, 0o644);
    const load = () => loadWebhookTargets([{ name: 'ops', url: 'http://127.0.0.1:9/', secretFile: open }]);
    expect(load).toThrow(AlertWebhookSecretError);
    expect(load).toThrow(/chmod 600/);
    try {
      load();
    } catch (err) {
      expect(String(err)).not.toContain(KEY);
    }
  });

  describe('in a running hub', () => {
    let broker: TestBroker;
    const hubs: HubProcess[] = [];
    beforeAll(async () => {
      broker = await startTestBroker();
    });
    afterEach(async () => {
      await Promise.all(hubs.splice(0).map((h) => h.kill('SIGKILL')));
    });
    afterAll(async () => {
      await broker?.close();
    });

    it('a webhook secret file others can read stops the hub at start, naming the file', async () => {
      const open = join(dir.dir, 'readable.key');
      writeFileSync(open, KEY);
      chmodSync(open, 0o644);
      const configFile = writeHubConfig({
        dir: dir.dir,
        brokerUrl: broker.url,
        database: await databases.fresh(),
        replicaId: `badkey-${dialect}`,
        connections: 1,
        extra: { alerts: { webhooks: [{ name: 'ops', url: 'http://127.0.0.1:9/', secretFile: open }] } },
      });
      const hub = startHubProcess(configFile);
      hubs.push(hub);
      expect(await hub.exited).not.toBe(0);
      expect(hub.output()).toContain(`secretFile ${open} is readable by group or others`);
      expect(hub.output()).not.toContain(KEY);
    });

    it('a delivery pending when the hub is killed is delivered once after it restarts', async () => {
      receiver = await startWebhookReceiver(KEY);
      cleanups.push(() => receiver.close());
      receiver.otherwise = { status: 500 };
      const where = await databases.fresh();
      const configFile = writeHubConfig({
        dir: dir.dir,
        brokerUrl: broker.url,
        database: where,
        replicaId: `webhooks-${dialect}`,
        connections: 1,
        extra: {
          alerts: {
            intervalSeconds: 1,
            offline: { afterMinutes: 0.02 },
            webhooks: [{ name: 'ops', url: receiver.url, secretFile }],
            // A lease held at the kill lasts the request timeout and 5 s more.
            delivery: { firstRetrySeconds: 0.2, maxRetrySeconds: 0.5, timeoutSeconds: 2 },
          },
        },
      });
      const first = startHubProcess(configFile);
      hubs.push(first);
      await first.started();
      const publisher = await connectPublisher(broker.url, `webhooks-device-${dialect}`);
      await publishAll(publisher, [{ topic: topic('pi-gone', 'presence'), payload: presencePayload('offline', 1, new Date(), 'connection-lost') }]);
      await publisher.endAsync();

      const db = await openHubDatabase(where);
      cleanups.push(() => db.close());
      await waitFor(() => receiver.received.length >= 2, () => `the hub to try the webhook twice: ${first.output()}`, 30_000);
      await first.kill('SIGKILL');
      const pending = await db.db.selectFrom('alert_deliveries').selectAll().execute();
      expect(pending).toMatchObject([{ event: 'opened', state: 'pending' }]);
      expect(receiver.received.every((r) => r.signatureValid && r.answered === 500)).toBe(true);

      receiver.otherwise = { status: 200 };
      const second = startHubProcess(configFile);
      hubs.push(second);
      await second.started();
      await waitFor(() => receiver.received.some((r) => r.answered === 200), () => `the restarted hub to deliver: ${second.output()}`, 30_000);
      // A few more rounds of the queue: nothing is sent again.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const delivered = receiver.received.filter((r) => r.answered === 200);
      expect(delivered).toHaveLength(1);
      expect(delivered[0]!.headers['x-fleetlet-delivery']).toBe(pending[0]!.delivery_id);
      expect(await db.db.selectFrom('alert_deliveries').select(['event', 'state']).execute()).toEqual([{ event: 'opened', state: 'delivered' }]);
      expect(`${first.output()}${second.output()}`).not.toContain(KEY);
    });
  });
});
