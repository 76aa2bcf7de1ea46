import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubAlertsSection } from '../../src/config/hub-alerts-schema.js';
import { AlertEngine } from '../../src/hub/alerts/engine.js';
import { createLogger } from '../../src/lib/logger.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { hubDialects } from '../helpers/postgres.js';
import { deviceRow, startHubApi, type TestHubApi } from '../helpers/hub-api.js';

/** Reads Server-Sent Events from a live /api/v1/stream response. */
class EventReader {
  private buffer = '';
  readonly changes: { event: string; data: Record<string, unknown> }[] = [];
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly done: Promise<void>;

  constructor(body: ReadableStream<Uint8Array>) {
    this.reader = body.getReader();
    this.done = this.pump();
  }

  private async pump(): Promise<void> {
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await this.reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) return;
      this.buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = this.buffer.indexOf('\n\n')) >= 0) {
        const block = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) this.changes.push({ event, data: JSON.parse(data) as Record<string, unknown> });
      }
    }
  }

  async waitFor(event: string, deviceId: string, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.changes.find(
        (c) =>
          c.event === event &&
          (c.data.deviceId ?? (c.data.event as { deviceId?: string })?.deviceId ?? (c.data.alert as { deviceId?: string })?.deviceId) === deviceId,
      );
      if (found) return found.data;
      if (Date.now() > deadline) throw new Error(`no ${event} for ${deviceId} within ${timeoutMs} ms; got ${JSON.stringify(this.changes)}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  async close(): Promise<void> {
    await this.reader.cancel();
    await this.done;
  }
}

describe.each(hubDialects())('hub live stream on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  let api: TestHubApi;

  beforeAll(async () => {
    api = await startHubApi(databases);
    await api.hub.db.insertInto('devices').values(deviceRow('pi-old', { last_seen_ms: Date.now() })).execute();
  });
  afterAll(async () => {
    await api?.close();
    await databases.close();
  });

  const open = async (query = '') => {
    const res = await fetch(`${api.url}/api/v1/stream${query}`, { headers: { authorization: `Bearer ${api.tokens.viewer}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    return new EventReader(res.body!);
  };

  it('sends what the ingest commits after the stream opened: reports, online, offline, events; not the past', async () => {
    const stream = await open();
    const now = Date.now();
    await api.hub.db
      .insertInto('devices')
      .values(deviceRow('pi-new', { last_seen_ms: now, presence_state: 'online', presence_at_ms: now }))
      .execute();
    expect(await stream.waitFor('device.online', 'pi-new')).toMatchObject({ type: 'device.online', at: new Date(now).toISOString() });
    expect(await stream.waitFor('device.reported', 'pi-new')).toMatchObject({ lastSeen: new Date(now).toISOString() });

    await api.hub.db
      .insertInto('events')
      .values({
        device_id: 'pi-new', message_id: 'm-1', kind: 'k3s.down', event_key: null, state: 'raised', severity: 'critical',
        message: 'k3s agent is down', occurred_at_ms: now, received_at_ms: Date.now(), payload_json: '{}',
      })
      .execute();
    expect(await stream.waitFor('event', 'pi-new')).toMatchObject({ event: { kind: 'k3s.down', severity: 'critical' } });

    await api.hub.db
      .updateTable('devices')
      .set({ presence_state: 'offline', presence_reason: 'connection-lost', last_seen_ms: Date.now(), presence_at_ms: Date.now() })
      .where('device_id', '=', 'pi-new')
      .execute();
    expect(await stream.waitFor('device.offline', 'pi-new')).toMatchObject({ reason: 'connection-lost' });
    expect(stream.changes.some((c) => c.data.deviceId === 'pi-old')).toBe(false);
    expect(stream.changes.filter((c) => c.event === 'event')).toHaveLength(1);
    await stream.close();
  });

  it('sends alerts as the engine opens and resolves them', async () => {
    const stream = await open();
    const engine = new AlertEngine({ hub: api.hub, config: HubAlertsSection.parse({}), log: createLogger({ level: 'silent' }) });
    await engine.report({ rule: 'certificate-expiring', subject: 'pi-cert', deviceId: 'pi-cert', active: true, severity: 'warning', summary: 'expires in 3 days' });
    expect(await stream.waitFor('alert.opened', 'pi-cert')).toMatchObject({ alert: { rule: 'certificate-expiring', state: 'open', summary: 'expires in 3 days' } });
    await engine.report({ rule: 'certificate-expiring', subject: 'pi-cert', active: false, summary: 'renewed' });
    expect(await stream.waitFor('alert.resolved', 'pi-cert')).toMatchObject({ alert: { state: 'resolved' } });
    expect(stream.changes.filter((c) => c.event.startsWith('alert.'))).toHaveLength(2);
    await stream.close();
  });

  it('sends only the asked-for device with ?device=', async () => {
    const stream = await open('?device=pi-two');
    await api.hub.db.insertInto('devices').values([deviceRow('pi-one', { last_seen_ms: Date.now() }), deviceRow('pi-two', { last_seen_ms: Date.now() })]).execute();
    await stream.waitFor('device.reported', 'pi-two');
    expect(stream.changes.every((c) => c.data.deviceId === 'pi-two')).toBe(true);
    await stream.close();
  });

  it('refuses a stream without credentials and counts open streams on /metrics', async () => {
    expect((await fetch(`${api.url}/api/v1/stream`)).status).toBe(401);
    const stream = await open();
    expect(await (await api.get('/metrics')).text()).toMatch(/^fleetlet_hub_stream_clients 1$/m);
    await stream.close();
  });
});
