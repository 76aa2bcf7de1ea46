import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openHubDatabase, type HubDatabase } from '../../src/hub/db/open.js';
import { waitFor } from '../helpers/wait.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { connectPublisher, publishAll, startHubProcess, writeHubConfig, type HubProcess } from '../helpers/hub-process.js';
import { startTestBroker, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { hubDialects } from '../helpers/postgres.js';
import { eventPayload, inventoryPayload, presencePayload, resultPayload, statusPayload, topic } from '../fixtures/hub-messages.js';

async function count(hub: HubDatabase, table: 'status_samples' | 'events' | 'command_results' | 'rejected_messages'): Promise<number> {
  return Number((await hub.db.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
}

async function waitForCount(hub: HubDatabase, table: Parameters<typeof count>[1], expected: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = -1;
  while (Date.now() < deadline) {
    seen = await count(hub, table);
    if (seen >= expected) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${table}: ${seen} rows after ${timeoutMs} ms, expected ${expected}`);
}

describe.each(hubDialects())('fleetlet hub ingest on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  const dir = tempDir('fleetlet-hub-ingest-');
  let broker: TestBroker;
  const running: HubProcess[] = [];
  beforeAll(async () => {
    broker = await startTestBroker();
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((hub) => hub.kill('SIGKILL')));
  });
  afterAll(async () => {
    await broker.close();
    await databases.close();
    dir.cleanup();
  });

  const start = async (where: { file: string; url?: string }, replicaId: string) => {
    const hub = startHubProcess(writeHubConfig({ dir: dir.dir, brokerUrl: broker.url, database: where, replicaId }));
    running.push(hub);
    await hub.started();
    return hub;
  };

  it('stores what devices send, reads retained presence and inventory published before it subscribed, keeps invalid messages aside', async () => {
    const where = await databases.fresh();
    const publisher = await connectPublisher(broker.url, `device-side-${dialect}-1`);
    await publishAll(publisher, [
      { topic: topic('pi-a', 'presence'), payload: presencePayload('online', 3, new Date()), retain: true },
      { topic: topic('pi-a', 'inventory'), payload: inventoryPayload('pi-a', 'sha256:aaaa', new Date()), retain: true },
    ]);
    const hub = await start(where, `ingest-${dialect}`);
    const statuses = Array.from({ length: 100 }, (_, i) => ({ topic: topic(i % 2 ? 'pi-a' : 'pi-b', 'status'), payload: statusPayload({ seq: i + 1 }) }));
    await publishAll(publisher, [
      ...statuses,
      statuses[0]!, // a re-send: stored once
      ...Array.from({ length: 3 }, () => ({ topic: topic('pi-b', 'events'), payload: eventPayload() })),
      ...Array.from({ length: 2 }, () => ({ topic: topic('pi-a', 'results'), payload: resultPayload('pi-a') })),
      { topic: topic('pi-b', 'status'), payload: Buffer.from('{"schemaVersion":1,') },
      { topic: topic('pi-b', 'events'), payload: { schemaVersion: 1, kind: 'Not A Kind' } },
    ]);
    const db = await openHubDatabase(where);
    try {
      await waitForCount(db, 'status_samples', 100);
      await waitForCount(db, 'rejected_messages', 2);
      await waitForCount(db, 'command_results', 2);
      await waitForCount(db, 'events', 3);
      await waitFor(() => hub.output().length > 0, 'hub output', 30_000);
      const devices = await db.db.selectFrom('devices').select(['device_id', 'presence_state', 'presence_boot_sequence', 'fingerprint']).orderBy('device_id').execute();
      expect(devices).toEqual([
        { device_id: 'pi-a', presence_state: 'online', presence_boot_sequence: 3, fingerprint: 'sha256:aaaa' },
        { device_id: 'pi-b', presence_state: null, presence_boot_sequence: null, fingerprint: null },
      ]);
      expect(await count(db, 'status_samples')).toBe(100);
    } finally {
      await db.close();
      await publisher.endAsync();
    }
    expect(await hub.kill('SIGTERM')).toBe(0);
  });

  it('receives the reports published while it was stopped, from its persistent session', async () => {
    const where = await databases.fresh();
    const first = await start(where, `persist-${dialect}`);
    expect(await first.kill('SIGTERM')).toBe(0);
    const publisher = await connectPublisher(broker.url, `device-side-${dialect}-2`);
    await publishAll(publisher, Array.from({ length: 300 }, (_, i) => ({ topic: topic('pi-c', 'status'), payload: statusPayload({ seq: i + 1 }) })));
    await publisher.endAsync();
    await start(where, `persist-${dialect}`);
    const db = await openHubDatabase(where);
    try {
      await waitForCount(db, 'status_samples', 300);
    } finally {
      await db.close();
    }
  });
});
