import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { openHubDatabase, type HubDatabase } from '../../src/hub/db/open.js';
import { waitFor } from '../helpers/wait.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { connectPublisher, publishAll, startHubProcess, writeHubConfig, type HubProcess, type HubProcessOptions } from '../helpers/hub-process.js';
import { startMosquitto, mosquittoAvailable } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { hubDialects } from '../helpers/postgres.js';
import { statusPayload, topic } from '../fixtures/hub-messages.js';

/**
 * Zero loss, measured: a publisher sends status reports with known (device, seq) pairs while the hub is killed,
 * the broker restarted, or one of two replicas killed; afterwards every pair must be stored exactly once.
 */
const DEVICES = 40;

function reports(count: number, offset = 0) {
  return Array.from({ length: count }, (_, i) => {
    const n = offset + i;
    return { topic: topic(`dev-${n % DEVICES}`, 'status'), payload: statusPayload({ seq: Math.floor(n / DEVICES) + 1 }) };
  });
}

async function stored(db: HubDatabase): Promise<number> {
  return Number((await db.db.selectFrom('status_samples').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
}

/** Every (device, seq) published, each once: the count matches and no pair repeats. */
async function expectExactlyOnce(db: HubDatabase, expected: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await stored(db)) < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const repeated = await sql<{ device_id: string }>`SELECT device_id, seq FROM status_samples GROUP BY device_id, seq HAVING COUNT(*) > 1`.execute(db.db);
  expect(repeated.rows).toEqual([]);
  expect(await stored(db)).toBe(expected);
  const pairs = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM (SELECT DISTINCT device_id, seq FROM status_samples) AS d`.execute(db.db);
  expect(Number(pairs.rows[0]!.n)).toBe(expected);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!mosquittoAvailable()).each(hubDialects())('hub faults on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  const dir = tempDir('fleetlet-hub-faults-');
  const running: HubProcess[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((hub) => hub.kill('SIGKILL')));
  });
  afterAll(async () => {
    await databases.close();
    dir.cleanup();
  });

  const launch = (options: Omit<HubProcessOptions, 'dir'>) => {
    const hub = startHubProcess(writeHubConfig({ dir: dir.dir, ...options }));
    running.push(hub);
    return hub;
  };

  it('loses nothing and stores nothing twice when SIGKILLed 20 times at random moments during ingest', { timeout: 240_000 }, async () => {
    const broker = await startMosquitto();
    const where = await databases.fresh();
    const db = await openHubDatabase(where);
    const options = { brokerUrl: broker.url, database: where, replicaId: `killed-${dialect}` };
    try {
      // The first start creates the sessions; from then on the broker queues for them.
      const first = launch(options);
      await first.started();
      await first.kill('SIGKILL');
      const publisher = await connectPublisher(broker.url, `publisher-kill-${dialect}`);
      // A steady stream (about 250 reports/s) until the last kill, so every run of the hub has work.
      let killing = true;
      let total = 0;
      const publishing = (async () => {
        while (killing) {
          await publishAll(publisher, reports(100, total), 50);
          total += 100;
          await sleep(400);
        }
      })();
      for (let kill = 0; kill < 20; kill++) {
        const before = await stored(db);
        const hub = launch(options);
        // Killed while storing: once its first commit is visible, at a random moment of the next 300 ms.
        const deadline = Date.now() + 60_000;
        while ((await stored(db)) === before && Date.now() < deadline) await sleep(20);
        expect(await stored(db), `run ${kill + 1} stored nothing within 60 s`).toBeGreaterThan(before);
        await sleep(Math.random() * 300);
        expect(await hub.kill('SIGKILL')).toBe(null);
      }
      killing = false;
      await publishing;
      await publisher.endAsync();
      launch(options);
      await expectExactlyOnce(db, total, 120_000);
    } finally {
      await db.close();
      await broker.close();
    }
  });

  it('loses nothing queued or in flight across a broker restart in the middle of a stream', { timeout: 180_000 }, async () => {
    const persistence = tempDir('fleetlet-mosquitto-data-');
    const broker = await startMosquitto({ persistenceDir: persistence.dir });
    const where = await databases.fresh();
    const db = await openHubDatabase(where);
    try {
      const hub = launch({ brokerUrl: broker.url, database: where, replicaId: `restart-${dialect}` });
      await hub.started();
      const publisher = await connectPublisher(broker.url, `publisher-restart-${dialect}`);
      // A backlog the hub is still working through when the broker goes down: queued in its sessions, some in flight.
      await publishAll(publisher, reports(2000), 100);
      while ((await stored(db)) < 300) await sleep(50);
      const before = await stored(db);
      await broker.restart();
      expect(before).toBeLessThan(2000);
      // mosquitto 2.0 drops what reaches a restored shared subscription before its member subscribes again, so the
      // second half is published once the hub is back (the hub reconnects within ~300 ms; devices back off longer).
      await waitFor(() => (hub.output().match(/"sessionPresent":true/g) ?? []).length >= 4, 'the hub to reconnect to its sessions', 30_000);
      await publishAll(publisher, reports(1000, 2000), 100);
      await publisher.endAsync();
      await expectExactlyOnce(db, 3000, 120_000);
    } finally {
      await db.close();
      await broker.close();
      persistence.cleanup();
    }
  });

  it('two replicas on one shared subscription: one killed mid-stream, the other keeps storing, nothing lost or doubled', { timeout: 180_000 }, async () => {
    const broker = await startMosquitto();
    const where = await databases.fresh();
    const db = await openHubDatabase(where);
    const shareGroup = `pair-${dialect}`;
    const a = { brokerUrl: broker.url, database: where, replicaId: `a-${dialect}`, shareGroup };
    const b = { ...a, replicaId: `b-${dialect}` };
    try {
      await Promise.all([launch(a).started(), launch(b).started()]);
      const [replicaA, replicaB] = running;
      const total = 3000;
      const publisher = await connectPublisher(broker.url, `publisher-pair-${dialect}`);
      const publishing = (async () => {
        for (let i = 0; i < total; i += 200) {
          await publishAll(publisher, reports(200, i), 50);
          await sleep(50);
        }
      })();
      while ((await stored(db)) < 600) await sleep(50);
      await replicaB!.kill('SIGKILL');
      const atKill = await stored(db);
      while ((await stored(db)) < atKill + 300) await sleep(50);
      await publishing;
      await publisher.endAsync();
      // mosquitto keeps handing the stopped replica's session its share; it gets them when it comes back.
      await launch(b).started();
      await expectExactlyOnce(db, total, 120_000);
      expect(replicaA!.output()).not.toContain('"level":"error"');
    } finally {
      await db.close();
      await broker.close();
    }
  });
});
