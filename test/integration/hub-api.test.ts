import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubDatabases } from '../helpers/hub-database.js';
import { hubDialects } from '../helpers/postgres.js';
import { deviceRow, startHubApi, type TestHubApi } from '../helpers/hub-api.js';
import { INVENTORY_EXAMPLE } from '../../src/protocol/inventory.js';
import { EVENT_EXAMPLE } from '../../src/protocol/event.js';
import { STATUS_EXAMPLE } from '../../src/protocol/status.js';
import { HubHttpSection } from '../../src/config/hub-http-schema.js';
import { HubApiServer } from '../../src/hub/api/server.js';
import { createLogger } from '../../src/lib/logger.js';
import { classifyMessage } from '../../src/hub/ingest/classify.js';
import { commitBatch } from '../../src/hub/ingest/commit-batch.js';
import { Topics } from '../../src/protocol/topics.js';
import { presencePayload, statusPayload, topic, TOPIC_ROOT } from '../fixtures/hub-messages.js';

const T0 = Date.UTC(2026, 10, 2, 12);

describe.each(hubDialects())('hub API reads on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  let api: TestHubApi;

  beforeAll(async () => {
    api = await startHubApi(databases);
    await api.hub.db
      .insertInto('devices')
      .values([
        deviceRow('pi-a', { labels: { site: 'home', tier: 'edge' }, groups: ['canary'], fleetlet_version: '0.2.0', last_seen_ms: T0 + 3 }),
        deviceRow('pi-b', { labels: { site: 'home' }, groups: ['canary', 'eu'], fleetlet_version: '0.1.0', health: 'warning', last_seen_ms: T0 + 1 }),
        deviceRow('pi-c', { labels: { site: 'office' }, groups: ['eu'], presence_state: 'offline', fleetlet_version: '0.2.0', last_seen_ms: T0 + 2 }),
        // A label whose value holds the text of another label must not match it.
        deviceRow('pi-d', { labels: { note: '"site":"home"' }, groups: ['x"canary'], presence_state: null, health: 'critical', last_seen_ms: T0 }),
        deviceRow('pi-e', { labels: { site: 'home' }, fleetlet_version: '0.1.0', last_seen_ms: T0 + 4, name: 'Kitchen' }),
      ])
      .execute();
  });
  afterAll(async () => {
    await api?.close();
    await databases.close();
  });

  const ids = async (query: string) => {
    const res = await api.get(`/api/v1/devices${query}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { devices: { deviceId: string }[]; total: number };
    return { ids: body.devices.map((d) => d.deviceId), total: body.total };
  };

  it('filters devices by label, group, state, version and health, all filters together', async () => {
    expect((await ids('?label=site=home')).ids).toEqual(['pi-a', 'pi-b', 'pi-e']);
    expect((await ids('?label=site=home&label=tier=edge')).ids).toEqual(['pi-a']);
    expect((await ids('?group=canary')).ids).toEqual(['pi-a', 'pi-b']);
    expect((await ids('?state=offline')).ids).toEqual(['pi-c']);
    expect((await ids('?state=unknown')).ids).toEqual(['pi-d']);
    expect((await ids('?version=0.1.0')).ids).toEqual(['pi-b', 'pi-e']);
    expect((await ids('?health=critical')).ids).toEqual(['pi-d']);
    expect((await ids('?label=site=home&group=eu&state=online&version=0.1.0&health=warning')).ids).toEqual(['pi-b']);
  });

  it('sorts by last seen either way and pages with a total over all pages', async () => {
    expect((await ids('?sort=lastSeen&order=desc')).ids).toEqual(['pi-e', 'pi-a', 'pi-c', 'pi-b', 'pi-d']);
    const first = await ids('?sort=lastSeen&limit=2');
    const second = await ids('?sort=lastSeen&limit=2&offset=2');
    const third = await ids('?sort=lastSeen&limit=2&offset=4');
    expect([first.ids, second.ids, third.ids]).toEqual([['pi-d', 'pi-b'], ['pi-c', 'pi-a'], ['pi-e']]);
    expect([first.total, third.total]).toEqual([5, 5]);
  });

  it('shows one device with its inventory, latest status, health, fingerprints and the identity-conflict flag', async () => {
    await api.hub.db
      .insertInto('devices')
      .values(
        deviceRow('pi-clone', {
          inventory_json: JSON.stringify(INVENTORY_EXAMPLE),
          status_json: JSON.stringify({ seq: 7, k3s: { state: 'running', healthy: true } }),
          status_sampled_at_ms: T0,
          identity_conflict: 1,
          identity_conflict_at_ms: T0 + 10,
          health: 'warning',
        }),
      )
      .execute();
    await api.hub.db
      .insertInto('device_fingerprints')
      .values([
        { device_id: 'pi-clone', fingerprint: 'sha256:aaaa', first_seen_ms: T0, last_seen_ms: T0 + 5, switches: 2 },
        { device_id: 'pi-clone', fingerprint: 'sha256:bbbb', first_seen_ms: T0 + 1, last_seen_ms: T0 + 6, switches: 2 },
      ])
      .execute();
    await api.hub.db
      .insertInto('open_conditions')
      .values({ device_id: 'pi-clone', kind: 'disk.low', condition_key: 'state', severity: 'warning', raised_at_ms: T0 })
      .execute();
    const res = await api.get('/api/v1/devices/pi-clone');
    expect(res.status).toBe(200);
    const device = (await res.json()) as Record<string, unknown>;
    expect(device).toMatchObject({
      deviceId: 'pi-clone',
      health: 'warning',
      identityConflict: true,
      identityConflictAt: new Date(T0 + 10).toISOString(),
      inventory: { deviceId: INVENTORY_EXAMPLE.deviceId, hardware: { model: INVENTORY_EXAMPLE.hardware.model } },
      status: { seq: 7 },
      openConditions: [{ kind: 'disk.low', key: 'state', severity: 'warning' }],
    });
    expect((device.fingerprints as { fingerprint: string }[]).map((f) => f.fingerprint)).toEqual(['sha256:aaaa', 'sha256:bbbb']);
    expect((await ids('?identityConflict=true')).ids).toEqual(['pi-clone']);
    expect((await api.get('/api/v1/devices/pi-nobody')).status).toBe(404);
  });

  it('answers history from raw samples, 5-minute or hourly rollups as `step` and the span choose', async () => {
    const HOUR = 3_600_000;
    await api.hub.db
      .insertInto('status_samples')
      .values([0, 1, 2].map((i) => ({
        device_id: 'pi-a', sampled_at_ms: T0 + i * 30_000, received_at_ms: T0 + i * 30_000, seq: i + 1, historical: 0,
        cpu_percent: 10 + i, memory_available_bytes: 1000, memory_total_bytes: 2000, temperature_c: 50, k3s_healthy: i === 2 ? 0 : 1,
        disk_free_bytes: 5000,
      })))
      .execute();
    await api.hub.db
      .insertInto('status_rollups')
      .values([
        { device_id: 'pi-a', bucket_seconds: 300, bucket_start_ms: T0, samples: 10, cpu_percent_avg: 11, cpu_percent_max: 30, memory_available_min: 900, temperature_c_max: 55, disk_free_min: 4000, k3s_unhealthy_samples: 1 },
        { device_id: 'pi-a', bucket_seconds: 3600, bucket_start_ms: T0, samples: 120, cpu_percent_avg: 12, cpu_percent_max: 40, memory_available_min: 800, temperature_c_max: 60, disk_free_min: 3000, k3s_unhealthy_samples: 3 },
      ])
      .execute();
    const history = async (query: string) => {
      const res = await api.get(`/api/v1/devices/pi-a/history${query}`);
      expect(res.status).toBe(200);
      return (await res.json()) as { step: string; points: { samples: number; cpuPercentAvg: number; k3sUnhealthySamples: number }[]; truncated: boolean };
    };
    const from = new Date(T0 - HOUR).toISOString();
    const raw = await history(`?from=${from}&to=${new Date(T0 + HOUR).toISOString()}`);
    expect(raw.step).toBe('raw');
    expect(raw.points.map((p) => p.cpuPercentAvg)).toEqual([10, 11, 12]);
    expect(raw.points.map((p) => p.k3sUnhealthySamples)).toEqual([0, 0, 1]);
    const fiveMinutes = await history(`?from=${from}&to=${new Date(T0 + 48 * HOUR).toISOString()}`);
    expect(fiveMinutes).toMatchObject({ step: '5m', points: [{ samples: 10, cpuPercentAvg: 11 }] });
    const hourly = await history(`?from=${from}&to=${new Date(T0 + 30 * 24 * HOUR).toISOString()}`);
    expect(hourly).toMatchObject({ step: '1h', points: [{ samples: 120, cpuPercentAvg: 12 }] });
    const limited = await history(`?from=${from}&to=${new Date(T0 + HOUR).toISOString()}&step=raw&limit=2`);
    expect([limited.points.length, limited.truncated]).toEqual([2, true]);
  });

  /** Messages as the ingest receives and commits them. */
  const ingest = async (messages: { topic: string; payload: unknown }[], receivedAtMs: number) => {
    const items = messages.map((m) =>
      classifyMessage({ topics: new Topics(TOPIC_ROOT), maxMessageBytes: 65_536 }, { topic: m.topic, payload: Buffer.from(JSON.stringify(m.payload)), retain: false }, receivedAtMs));
    await commitBatch(api.hub, items, { conflictWindowMs: 3_600_000, now: () => receivedAtMs });
  };

  it('answers history with network rates: per raw sample from the counters, per bucket their average', async () => {
    const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
    await ingest([0, 30, 60].map((s, i) => ({
      topic: topic('pi-net', 'status'),
      payload: statusPayload({ seq: i + 1, sampledAt: at(s), network: { rxBytes: 1000 + s * s * 100, txBytes: 500 + s * 10 } }),
    })), T0 + 60_000);
    await api.hub.db
      .insertInto('status_rollups')
      .values({ device_id: 'pi-net', bucket_seconds: 300, bucket_start_ms: T0, samples: 10, cpu_percent_avg: 1, cpu_percent_max: 2, memory_available_min: 1, temperature_c_max: 1, disk_free_min: 1, k3s_unhealthy_samples: 0, network_rx_rate_avg: 4_096, network_tx_rate_avg: 512 })
      .execute();
    const get = async (query: string) => (await (await api.get(`/api/v1/devices/pi-net/history${query}`)).json()) as { step: string; points: { networkRxRateAvg: number | null; networkTxRateAvg: number | null }[] };
    const raw = await get(`?from=${at(-60)}&to=${at(3600)}&step=raw`);
    expect(raw.points.map((p) => [p.networkRxRateAvg, p.networkTxRateAvg])).toEqual([[null, null], [3_000, 10], [9_000, 10]]);
    const buckets = await get(`?from=${at(-60)}&to=${at(3600)}&step=5m`);
    expect(buckets.points.map((p) => [p.networkRxRateAvg, p.networkTxRateAvg])).toEqual([[4_096, 512]]);
  });

  it("pages a device's presence history newest first, each birth and will once, and says which began a new boot", async () => {
    const presence = (state: 'online' | 'offline', boot: number, seconds: number, reason?: 'connection-lost' | 'stopped') =>
      ({ topic: topic('pi-boots', 'presence'), payload: presencePayload(state, boot, new Date(T0 + seconds * 1000), reason) });
    await ingest([presence('online', 7, 0)], T0);
    await ingest([presence('offline', 7, 0, 'connection-lost')], T0 + 60_000);
    await ingest([presence('offline', 7, 0, 'connection-lost')], T0 + 61_000);
    await ingest([presence('online', 8, 120)], T0 + 120_000);
    await ingest([presence('offline', 8, 300, 'stopped')], T0 + 300_000);
    await ingest([presence('online', 9, 400)], T0 + 400_000);
    type Page = { entries: { state: string; bootSequence: number; reason: string | null; at: string; receivedAt: string; newBoot: boolean }[]; nextBefore: number | null };
    const page = async (query: string) => (await (await api.get(`/api/v1/devices/pi-boots/presence${query}`, api.tokens.viewer)).json()) as Page;
    const entries = (p: Page) => p.entries.map((e) => [e.state, e.bootSequence, e.reason, e.newBoot]);
    const first = await page('?limit=2');
    expect(entries(first)).toEqual([
      ['online', 9, null, true],
      ['offline', 8, 'stopped', false],
    ]);
    const second = await page(`?limit=2&before=${first.nextBefore}`);
    expect(entries(second)).toEqual([
      ['online', 8, null, true],
      ['offline', 7, 'connection-lost', false],
    ]);
    expect(second.entries[0]!.receivedAt).toBe(new Date(T0 + 120_000).toISOString());
    const third = await page(`?limit=2&before=${second.nextBefore}`);
    expect([entries(third), third.nextBefore]).toEqual([[['online', 7, null, false]], null]);
    expect((await api.get('/api/v1/devices/pi-a/presence')).status).toBe(200);
    expect((await api.get('/api/v1/devices/pi-nobody/presence')).status).toBe(404);
    expect((await api.get('/api/v1/devices/pi-boots/presence?limit=0')).status).toBe(400);
  });

  it('pages events and results newest first, filtered by device', async () => {
    for (let i = 0; i < 5; i += 1) {
      await api.hub.db
        .insertInto('events')
        .values({
          device_id: i % 2 === 0 ? 'pi-a' : 'pi-b', message_id: `e-${i}`, kind: 'disk.low', event_key: 'state', state: 'raised',
          severity: 'warning', message: `event ${i}`, occurred_at_ms: T0 + i, received_at_ms: T0 + i, payload_json: '{}',
        })
        .execute();
    }
    await api.hub.db
      .insertInto('command_results')
      .values({
        device_id: 'pi-a', message_id: 'r-1', command_id: 'cmd-1', command_type: 'k3s.restart', status: 'succeeded', reason: null,
        at_ms: T0, received_at_ms: T0, payload_json: JSON.stringify({ status: 'succeeded', commandId: 'cmd-1' }),
      })
      .execute();
    const page1 = (await (await api.get('/api/v1/events?device=pi-a&limit=2')).json()) as { events: { message: string }[]; nextBefore: number };
    expect(page1.events.map((e) => e.message)).toEqual(['event 4', 'event 2']);
    const page2 = (await (await api.get(`/api/v1/events?device=pi-a&limit=2&before=${page1.nextBefore}`)).json()) as {
      events: { message: string }[];
      nextBefore: number | null;
    };
    expect(page2).toMatchObject({ events: [{ message: 'event 0' }], nextBefore: null });
    const results = (await (await api.get('/api/v1/results?device=pi-a')).json()) as { results: unknown[] };
    expect(results.results).toMatchObject([{ commandId: 'cmd-1', status: 'succeeded', result: { commandId: 'cmd-1' } }]);
  });

  it('answers malformed queries with 400 naming the field', async () => {
    const cases: [string, string][] = [
      ['/api/v1/devices?limit=0', 'limit'],
      ['/api/v1/devices?limit=100000', 'limit'],
      ['/api/v1/devices?sort=password', 'sort'],
      ['/api/v1/devices?state=sleeping', 'state'],
      ['/api/v1/devices?label=site', 'label'],
      ['/api/v1/devices?colour=red', 'colour'],
      ['/api/v1/devices?offset=-1', 'offset'],
      ['/api/v1/events?before=abc', 'before'],
      ['/api/v1/devices/pi-a/history?from=2026-11-03T00:00:00Z&to=2026-11-02T00:00:00Z', 'from'],
      ['/api/v1/devices/pi-a/history?step=1s', 'step'],
      ['/api/v1/devices/pi-a/history?from=yesterday', 'from'],
    ];
    for (const [path, field] of cases) {
      const res = await api.get(path);
      const body = (await res.json()) as { error: string; field?: string };
      expect({ path, status: res.status, field: body.field }).toEqual({ path, status: 400, field });
      expect(body.error).toContain(field);
    }
    const long = await api.get(`/api/v1/devices?group=${'x'.repeat(5000)}`);
    expect(long.status).toBe(400);
  });

  it('serves /metrics with devices by state, the database size and stored counters', async () => {
    await api.hub.db.insertInto('hub_counters').values({ name: 'rejected_total', value: 3 }).execute();
    const res = await api.get('/metrics');
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^fleetlet_hub_devices\{state="online"\} [1-9]/m);
    expect(text).toMatch(/^fleetlet_hub_devices\{state="offline"\} 1$/m);
    expect(text).toMatch(/^fleetlet_hub_stored_counter\{name="rejected_total"\} 3$/m);
    const size = Number(/^fleetlet_hub_database_bytes (\d+)$/m.exec(text)?.[1]);
    expect(size).toBeGreaterThan(0);
    expect((await fetch(`${api.url}/metrics`)).status).toBe(401);
  });

  it("appends the ingest's metrics to /metrics, each metric family declared once", async () => {
    const ingestText = '# HELP fleetlet_hub_database_bytes Size.\n# TYPE fleetlet_hub_database_bytes gauge\nfleetlet_hub_database_bytes 4096\n';
    const server = new HubApiServer({
      hub: api.hub,
      http: HubHttpSection.parse({ listen: '127.0.0.1:0' }),
      logger: createLogger({ level: 'silent' }),
      ingestMetricsText: async () => ingestText,
    });
    const url = await server.start();
    try {
      const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${api.tokens.viewer}` } })).text();
      expect(text.endsWith(ingestText)).toBe(true);
      const families = text.split('\n').filter((line) => line.startsWith('# TYPE ')).map((line) => line.split(' ')[2]);
      expect(families.length).toBeGreaterThan(5);
      expect(new Set(families).size).toBe(families.length);
    } finally {
      await server.stop();
    }
  });

  it('gives each listed device the vitals of its newest status, and each event the remedy the device sent', async () => {
    const status = { ...STATUS_EXAMPLE, outbox: { depth: { status: 3, event: 1, result: 0 }, dropped: { status: 0, event: 0, result: 0 } } };
    await api.hub.db.insertInto('devices').values(deviceRow('pi-vitals', { status_json: JSON.stringify(status), status_sampled_at_ms: T0 })).execute();
    await api.hub.db
      .insertInto('events')
      .values({
        device_id: 'pi-vitals', message_id: 'e-remedy', kind: 'disk.low', event_key: 'k3s', state: 'raised', severity: 'warning',
        message: EVENT_EXAMPLE.message, occurred_at_ms: T0, received_at_ms: T0, payload_json: JSON.stringify(EVENT_EXAMPLE),
      })
      .execute();
    const list = (await (await api.get('/api/v1/devices?sort=lastSeen&limit=500')).json()) as { devices: { deviceId: string; vitals: unknown }[] };
    const memory = STATUS_EXAMPLE.memory!;
    expect(list.devices.find((d) => d.deviceId === 'pi-vitals')?.vitals).toEqual({
      cpuPercent: STATUS_EXAMPLE.cpu.percent,
      memoryUsedPercent: Math.round(((memory.totalBytes - memory.availableBytes) / memory.totalBytes) * 1000) / 10,
      temperatureC: STATUS_EXAMPLE.temperatureC,
      outboxBacklog: 4,
    });
    // A device that sent no status yet has none.
    expect(list.devices.find((d) => d.deviceId === 'pi-a')?.vitals).toBeNull();
    const events = (await (await api.get('/api/v1/events?device=pi-vitals')).json()) as { events: { remedy: string | null }[] };
    expect(events.events.map((e) => e.remedy)).toEqual([EVENT_EXAMPLE.remedy]);
    const others = (await (await api.get('/api/v1/events?device=pi-a&limit=1')).json()) as { events: { remedy: string | null }[] };
    expect(others.events[0]?.remedy).toBeNull();
  });
});
