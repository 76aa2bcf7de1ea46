import { afterAll, describe, expect, it } from 'vitest';
import { HubConfigDefaults } from '../helpers/hub-config.js';
import { Topics } from '../../src/protocol/topics.js';
import { classifyMessage } from '../../src/hub/ingest/classify.js';
import { commitBatch } from '../../src/hub/ingest/commit-batch.js';
import { runRetention } from '../../src/hub/retention.js';
import type { HubDatabase } from '../../src/hub/db/open.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { hubDialects } from '../helpers/postgres.js';
import { eventPayload, inventoryPayload, presencePayload, resultPayload, statusPayload, topic, TOPIC_ROOT } from '../fixtures/hub-messages.js';

const classify = { topics: new Topics(TOPIC_ROOT), maxMessageBytes: 256 * 1024 };
const WINDOW_MS = 3_600_000;

/** Receives raw payloads as the ingest does (classify, then one commit per call). */
async function receive(hub: HubDatabase, messages: { topic: string; payload: unknown; retain?: boolean }[], receivedAtMs = Date.now()) {
  const items = messages.map((m) =>
    classifyMessage(classify, { topic: m.topic, payload: Buffer.isBuffer(m.payload) ? m.payload : Buffer.from(JSON.stringify(m.payload)), retain: m.retain ?? false }, receivedAtMs),
  );
  return commitBatch(hub, items, { conflictWindowMs: WINDOW_MS, now: () => receivedAtMs });
}

async function device(hub: HubDatabase, id: string) {
  return hub.db.selectFrom('devices').selectAll().where('device_id', '=', id).executeTakeFirstOrThrow();
}

describe.each(hubDialects())('hub store on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  afterAll(() => databases.close());

  it('stores each messageId once, across commits and within one', async () => {
    const hub = await databases.open();
    const status = statusPayload();
    const event = eventPayload();
    const result = resultPayload('pi-1');
    expect(await receive(hub, [{ topic: topic('pi-1', 'status'), payload: status }, { topic: topic('pi-1', 'status'), payload: status }]))
      .toEqual({ stored: 1, duplicates: 1, rejected: 0 });
    // A backlog re-send is marked historical: other bytes, same messageId.
    const resent = await receive(hub, [
      { topic: topic('pi-1', 'status'), payload: { ...status, historical: true } },
      { topic: topic('pi-1', 'events'), payload: event },
      { topic: topic('pi-1', 'results'), payload: result },
    ]);
    expect(resent).toEqual({ stored: 2, duplicates: 1, rejected: 0 });
    await receive(hub, [{ topic: topic('pi-1', 'events'), payload: event }, { topic: topic('pi-1', 'results'), payload: result }]);
    const count = async (table: 'status_samples' | 'events' | 'command_results') =>
      Number((await hub.db.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    expect([await count('status_samples'), await count('events'), await count('command_results')]).toEqual([1, 1, 1]);
    await hub.close();
  });

  it('orders presence by boot sequence: a late will of an earlier run does not take a device offline', async () => {
    const hub = await databases.open();
    const t = Date.parse('2026-03-01T08:00:00Z');
    await receive(hub, [{ topic: topic('pi-1', 'presence'), payload: presencePayload('online', 5, new Date(t)) }]);
    await receive(hub, [{ topic: topic('pi-1', 'presence'), payload: presencePayload('offline', 4, new Date(t + 60_000), 'connection-lost') }]);
    expect((await device(hub, 'pi-1')).presence_state).toBe('online');
    // The will of this run carries its connection's opening time, just before the birth.
    await receive(hub, [{ topic: topic('pi-1', 'presence'), payload: presencePayload('offline', 5, new Date(t - 200), 'connection-lost') }]);
    expect(await device(hub, 'pi-1')).toMatchObject({ presence_state: 'offline', presence_boot_sequence: 5, presence_reason: 'connection-lost' });
    await receive(hub, [{ topic: topic('pi-1', 'presence'), payload: presencePayload('online', 6, new Date(t + 120_000)) }]);
    expect(await device(hub, 'pi-1')).toMatchObject({ presence_state: 'online', presence_boot_sequence: 6 });
    await hub.close();
  });

  it('keeps every birth and will in the presence history once, however often the broker delivers them', async () => {
    const hub = await databases.open();
    const t = Date.parse('2026-03-01T08:00:00Z');
    const presence = (state: 'online' | 'offline', boot: number, at: number, reason?: 'connection-lost' | 'stopped') =>
      ({ topic: topic('pi-h', 'presence'), payload: presencePayload(state, boot, new Date(at), reason) });
    await receive(hub, [presence('online', 5, t), presence('online', 5, t)], t);
    await receive(hub, [presence('offline', 5, t - 200, 'connection-lost')], t + 60_000);
    // The broker redelivers the will, and replays the retained copy when a hub subscribes again.
    await receive(hub, [presence('offline', 5, t - 200, 'connection-lost')], t + 61_000);
    await receive(hub, [{ ...presence('offline', 5, t - 200, 'connection-lost'), retain: true }], t + 62_000);
    await receive(hub, [presence('online', 6, t + 120_000)], t + 120_000);
    const rows = await hub.db.selectFrom('presence_history').selectAll().where('device_id', '=', 'pi-h').orderBy('id').execute();
    expect(rows.map((r) => [r.state, r.boot_sequence, r.reason, r.at_ms, r.received_at_ms])).toEqual([
      ['online', 5, null, t, t],
      ['offline', 5, 'connection-lost', t - 200, t + 60_000],
      ['online', 6, null, t + 120_000, t + 120_000],
    ]);
    // The same commit keeps the device row's newest presence.
    expect(await device(hub, 'pi-h')).toMatchObject({ presence_state: 'online', presence_boot_sequence: 6 });
    await hub.close();
  });

  it('stores network rates from the counters between samples, also across batches and out of order, none across a reboot', async () => {
    const hub = await databases.open();
    const t = Date.parse('2026-03-01T08:00:00Z');
    const sample = (seconds: number, rx: number, tx: number, uptimeSeconds = 86_400) =>
      ({ topic: topic('pi-n', 'status'), payload: statusPayload({ sampledAt: new Date(t + seconds * 1000).toISOString(), uptimeSeconds, network: { rxBytes: rx, txBytes: tx } }) });
    await receive(hub, [sample(0, 1_000_000, 50_000), sample(30, 1_300_000, 56_000)]);
    // Two devices in one batch, each rated against its own stored sample.
    const other = (seconds: number, rx: number) =>
      ({ topic: topic('pi-n2', 'status'), payload: statusPayload({ sampledAt: new Date(t + seconds * 1000).toISOString(), network: { rxBytes: rx, txBytes: 0 } }) });
    await receive(hub, [other(0, 5_000)]);
    await receive(hub, [sample(60, 1_900_000, 59_000), other(10, 6_000)]);
    const otherRate = await hub.db.selectFrom('status_samples').select('network_rx_rate').where('device_id', '=', 'pi-n2').orderBy('sampled_at_ms').execute();
    expect(otherRate.map((r) => r.network_rx_rate)).toEqual([null, 100]);
    // A backlog sample between two stored ones: its rate is over the interval since the older one.
    await receive(hub, [sample(45, 1_450_000, 56_300)]);
    // Rebooted 10 s before this sample: the counters restarted, so no rate, then rates again from it.
    await receive(hub, [sample(90, 20_000, 1_000, 10), sample(120, 80_000, 4_000, 40)]);
    const rows = await hub.db.selectFrom('status_samples').select(['sampled_at_ms', 'network_rx_bytes', 'network_rx_rate', 'network_tx_rate'])
      .where('device_id', '=', 'pi-n').orderBy('sampled_at_ms').execute();
    expect(rows.map((r) => [(r.sampled_at_ms - t) / 1000, r.network_rx_rate, r.network_tx_rate])).toEqual([
      [0, null, null],
      [30, 10_000, 200],
      [45, 10_000, 20],
      [60, 20_000, 100],
      [90, null, null],
      [120, 2_000, 100],
    ]);
    expect(rows[0]!.network_rx_bytes).toBe(1_000_000);
    // The rollups average the rates of their samples.
    await runRetention(hub, HubConfigDefaults.retention, t + 3_600_000);
    const bucket = await hub.db.selectFrom('status_rollups').select(['samples', 'network_rx_rate_avg', 'network_tx_rate_avg'])
      .where('device_id', '=', 'pi-n').where('bucket_seconds', '=', 3600).executeTakeFirstOrThrow();
    expect(bucket).toEqual({ samples: 6, network_rx_rate_avg: 10_500, network_tx_rate_avg: 105 });
    await hub.close();
  });

  it('takes last seen from the newest message of any kind, and a retained replay only at its own time', async () => {
    const hub = await databases.open();
    const t = Date.parse('2026-03-01T08:00:00Z');
    await receive(hub, [{ topic: topic('pi-2', 'events'), payload: eventPayload() }], t);
    expect((await device(hub, 'pi-2')).last_seen_ms).toBe(t);
    await receive(hub, [{ topic: topic('pi-2', 'results'), payload: resultPayload('pi-2') }], t + 5_000);
    expect((await device(hub, 'pi-2')).last_seen_ms).toBe(t + 5_000);
    // The broker replays the retained presence when a hub subscribes: it was sent long before.
    await receive(hub, [{ topic: topic('pi-2', 'presence'), payload: presencePayload('online', 1, new Date(t - 3_600_000)), retain: true }], t + 60_000);
    expect(await device(hub, 'pi-2')).toMatchObject({ last_seen_ms: t + 5_000, presence_state: 'online' });
    await hub.close();
  });

  it('keeps the newest status and inventory by the device clock, whatever order they arrive in', async () => {
    const hub = await databases.open();
    const newer = statusPayload({ seq: 10, sampledAt: '2026-03-01T08:10:00.000Z', k3s: { state: 'crash-loop', healthy: false } });
    const older = statusPayload({ seq: 9, sampledAt: '2026-03-01T08:09:30.000Z' });
    await receive(hub, [{ topic: topic('pi-3', 'status'), payload: newer }]);
    await receive(hub, [{ topic: topic('pi-3', 'status'), payload: { ...older, historical: true } }]);
    await receive(hub, [{ topic: topic('pi-3', 'inventory'), payload: inventoryPayload('pi-3', 'sha256:aaaa', new Date('2026-03-01T08:00:00Z'), { k3sVersion: 'v1.36.3+k3s1' }) }]);
    await receive(hub, [{ topic: topic('pi-3', 'inventory'), payload: inventoryPayload('pi-3', 'sha256:aaaa', new Date('2026-03-01T07:00:00Z'), { k3sVersion: 'v1.35.0+k3s1' }) }]);
    const row = await device(hub, 'pi-3');
    expect(row).toMatchObject({ k3s_state: 'crash-loop', k3s_healthy: 0, health: 'warning', k3s_version: 'v1.36.3+k3s1' });
    expect(JSON.parse(row.status_json!).seq).toBe(10);
    await hub.close();
  });

  it('flags a device id that two machines present (a cloned image), not a board swapped once', async () => {
    const hub = await databases.open();
    const at = (minutes: number) => new Date(Date.parse('2026-03-01T08:00:00Z') + minutes * 60_000);
    const inventory = (id: string, machine: string, minutes: number) => ({ topic: topic(id, 'inventory'), payload: inventoryPayload(id, machine, at(minutes)) });
    // The swapped board: one new fingerprint, then it stays.
    await receive(hub, [inventory('swapped', 'sha256:old', 0)], at(0).getTime());
    await receive(hub, [inventory('swapped', 'sha256:new', 1)], at(1).getTime());
    await receive(hub, [inventory('swapped', 'sha256:new', 2)], at(2).getTime());
    expect(await device(hub, 'swapped')).toMatchObject({ fingerprint: 'sha256:new', identity_conflict: 0 });
    // Two live clones take the session from each other, each announcing its own machine on every connect.
    await receive(hub, [inventory('cloned', 'sha256:one', 0)], at(0).getTime());
    await receive(hub, [inventory('cloned', 'sha256:two', 1)], at(1).getTime());
    expect((await device(hub, 'cloned')).identity_conflict).toBe(0);
    await receive(hub, [inventory('cloned', 'sha256:one', 2)], at(2).getTime());
    expect(await device(hub, 'cloned')).toMatchObject({ identity_conflict: 1, identity_conflict_at_ms: at(2).getTime() });
    const prints = await hub.db.selectFrom('device_fingerprints').select(['fingerprint', 'switches']).where('device_id', '=', 'cloned').orderBy('fingerprint').execute();
    expect(prints).toEqual([{ fingerprint: 'sha256:one', switches: 1 }, { fingerprint: 'sha256:two', switches: 1 }]);
    await hub.close();
  });

  it('derives health from conditions raised and not cleared', async () => {
    const hub = await databases.open();
    const raised = eventPayload({ kind: 'temperature.high', key: undefined, state: 'raised', severity: 'critical', occurredAt: '2026-03-01T08:00:00.000Z' });
    await receive(hub, [{ topic: topic('pi-4', 'events'), payload: raised }]);
    expect((await device(hub, 'pi-4')).health).toBe('critical');
    const cleared = eventPayload({ kind: 'temperature.high', key: undefined, state: 'cleared', severity: 'info', occurredAt: '2026-03-01T08:05:00.000Z' });
    await receive(hub, [{ topic: topic('pi-4', 'events'), payload: cleared }]);
    expect((await device(hub, 'pi-4')).health).toBe('ok');
    await hub.close();
  });

  it('keeps invalid messages aside with their reason and counts them, storing the valid ones of the same batch', async () => {
    const hub = await databases.open();
    const outcome = await receive(hub, [
      { topic: topic('pi-5', 'status'), payload: Buffer.from('{"schemaVersion":1,"seq":') },
      { topic: topic('pi-5', 'status'), payload: { schemaVersion: 1, seq: -1 } },
      { topic: topic('pi-5', 'events'), payload: Buffer.from([0xff, 0x00, 0xfe]) },
      { topic: topic('pi-5', 'inventory'), payload: inventoryPayload('someone-else', 'sha256:x', new Date()) },
      { topic: `${TOPIC_ROOT}/devices/Bad+Id/status`, payload: statusPayload() },
      { topic: topic('pi-5', 'status'), payload: statusPayload() },
    ]);
    expect(outcome).toEqual({ stored: 1, duplicates: 0, rejected: 5 });
    const rows = await hub.db.selectFrom('rejected_messages').select(['device_id', 'reason', 'payload_excerpt']).orderBy('id').execute();
    expect(rows.map((r) => r.reason)).toEqual([
      'payload is not strict JSON: not JSON',
      expect.stringMatching(/^invalid status: /),
      'payload is not strict JSON: not UTF-8',
      'inventory of "someone-else" on the topic of "pi-5"',
      'not a device topic',
    ]);
    expect(rows[2]!.payload_excerpt).toBe(`base64:${Buffer.from([0xff, 0x00, 0xfe]).toString('base64')}`);
    const counter = await hub.db.selectFrom('hub_counters').select('value').where('name', '=', 'rejected_total').executeTakeFirstOrThrow();
    expect(counter.value).toBe(5);
    await hub.close();
  });

  it('rolls raw samples up into 5-minute and hourly buckets and deletes what outlived its retention', async () => {
    const hub = await databases.open();
    const retention = { ...HubConfigDefaults.retention, rawStatusDays: 1, fiveMinuteDays: 3, eventDays: 1, messageIdDays: 2, rejectedMaxRows: 10 };
    const now = Date.parse('2026-03-10T12:00:00Z');
    const hours = (h: number) => now - h * 3_600_000;
    // Two samples in one 5-minute bucket two hours ago, one 30 hours ago (beyond raw retention), one 4 days ago.
    const samples = [hours(2), hours(2) + 30_000, hours(30), hours(96)].map((t, i) =>
      ({ topic: topic('pi-6', 'status'), payload: statusPayload({ seq: i + 1, sampledAt: new Date(t).toISOString(), cpu: { percent: 10 * (i + 1) } }) }));
    await receive(hub, samples, now - 1000);
    await receive(hub, [{ topic: topic('pi-6', 'events'), payload: eventPayload() }], hours(36));
    // Presence history is kept `presenceDays` (by its receipt): a birth 10 days ago goes, one 2 days ago stays.
    const presenceRetention = { ...retention, presenceDays: 7 };
    await receive(hub, [{ topic: topic('pi-6', 'presence'), payload: presencePayload('online', 1, new Date(hours(240))) }], hours(240));
    await receive(hub, [{ topic: topic('pi-6', 'presence'), payload: presencePayload('online', 2, new Date(hours(48))) }], hours(48));
    await receive(hub, Array.from({ length: 15 }, () => ({ topic: topic('pi-6', 'status'), payload: Buffer.from('x') })), now - 1000);

    const outcome = await runRetention(hub, presenceRetention, now);
    const rollups = await hub.db.selectFrom('status_rollups').selectAll().where('device_id', '=', 'pi-6').orderBy('bucket_seconds').orderBy('bucket_start_ms').execute();
    const fiveMinute = rollups.filter((r) => r.bucket_seconds === 300);
    // The 4-day-old bucket was built from its raw sample, then deleted with the 5-minute retention (3 days).
    expect(fiveMinute.map((r) => [r.bucket_start_ms, r.samples, r.cpu_percent_avg, r.cpu_percent_max])).toEqual([
      [Math.floor(hours(30) / 300_000) * 300_000, 1, 30, 30],
      [Math.floor(hours(2) / 300_000) * 300_000, 2, 15, 20],
    ]);
    expect(rollups.filter((r) => r.bucket_seconds === 3600)).toHaveLength(3);
    const remaining = await hub.db.selectFrom('status_samples').select('sampled_at_ms').orderBy('sampled_at_ms').execute();
    expect(remaining.map((r) => r.sampled_at_ms)).toEqual([hours(2), hours(2) + 30_000]);
    expect(await hub.db.selectFrom('events').selectAll().execute()).toEqual([]);
    expect(outcome.deleted).toMatchObject({ status_samples: 2, events: 1, rejected_messages: 5, presence_history: 1 });
    expect((await hub.db.selectFrom('presence_history').select('boot_sequence').execute()).map((r) => r.boot_sequence)).toEqual([2]);
    expect((await hub.db.selectFrom('rejected_messages').select('id').execute()).length).toBe(10);
    // Message ids of the deleted event are still remembered until their own retention.
    expect((await hub.db.selectFrom('received_messages').selectAll().execute()).length).toBe(5);
    // Run again: nothing new, nothing changes.
    await runRetention(hub, presenceRetention, now);
    expect(await hub.db.selectFrom('status_rollups').selectAll().where('device_id', '=', 'pi-6').orderBy('bucket_seconds').orderBy('bucket_start_ms').execute()).toEqual(rollups);
    await hub.close();
  });
});
