// npm run bench:hub-rollout: rollouts the hub runs, at scale. A real mosquitto, `fleetlet hub` on SQLite in this
// process (ingest and the rollout engine with its MQTT publisher), and 1,000 simulated devices on one connection that
// answer every command they get over MQTT. Two runs: (1) 5% of the devices fail their upgrade, the threshold is 2%:
// when does the rollout halt, and after how many devices; (2) the canary succeeds and then goes offline within the
// watch window: the rollout must halt before the first batch after the canaries. Options: --devices N.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config/schema.js';
import { createRollout } from '../src/hub/rollouts/create-rollout.js';
import { startRollouts } from '../src/hub/rollouts/run-rollouts.js';
import { rolloutDetail } from '../src/hub/rollouts/rollout-views.js';
import { startHub } from '../src/hub/hub-service.js';
import type { HubRolloutDetail } from '../src/protocol/hub-rollouts-api.js';
import { testKey } from '../test/fixtures/command-keys.js';
import { rolloutRequest } from '../test/fixtures/hub-rollout-requests.js';
import { startSimulatedFleet } from '../test/fixtures/simulated-fleet.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { tempDir } from '../test/helpers/paths.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const DEVICES = Array.from({ length: arg('devices', 1000) }, (_, i) => `bench-${String(i).padStart(5, '0')}`);
const CANARIES = 10;
const BATCH = Math.ceil(DEVICES.length / 10);

function batchesOf(ids: string[]): string[][] {
  const batches = [ids.slice(0, CANARIES)];
  for (let i = CANARIES; i < ids.length; i += BATCH) batches.push(ids.slice(i, i + BATCH));
  return batches;
}

async function main(): Promise<void> {
  const broker = await startMosquitto({ globalLines: ['max_queued_messages 100000', 'max_inflight_messages 1000'] });
  const dir = tempDir('fleetlet-bench-rollout-');
  const config = ConfigSchema.parse({
    broker: { url: broker.url, allowPlaintext: true, topicRoot: 'fleetlet/v1' },
    hub: { database: { file: join(dir.dir, 'hub.db') }, replicaId: 'bench', shareGroup: `bench-${randomBytes(3).toString('hex')}`, connections: 8 },
  });
  const log = pino({ level: 'silent' });
  const hub = await startHub({ config, log });
  await hub.ready();
  const rollouts = startRollouts({ database: hub.database, replicaId: hub.replicaId, config, log });
  const fleet = await startSimulatedFleet(broker.url, 'bench-fleet', DEVICES);
  const key = testKey('ops');
  try {
    const t0 = Date.now();
    for (;;) {
      const online = await hub.database.db.selectFrom('devices').select((eb) => eb.fn.countAll<number>().as('n')).where('presence_state', '=', 'online').executeTakeFirstOrThrow();
      if (Number(online.n) >= DEVICES.length) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    console.log(`${DEVICES.length} simulated devices online in the hub after ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    // Run 1: every 20th device (5%) fails; none of the canaries does. Threshold 2%.
    const failing = new Set(DEVICES.filter((_, i) => i >= CANARIES && i % 20 === 0));
    fleet.setAnswer((id) => (failing.has(id) ? 'fail' : 'succeed'));
    const first = rolloutRequest(key, batchesOf(DEVICES), { maxFailures: { percent: 2 }, watchSeconds: 0 });
    const halted = await runUntilEnd(hub.database, first, 'halted');
    const sent = countSent(halted.detail);
    console.log(
      `run 1: ${DEVICES.length} devices, ${failing.size} (5%) failing, threshold 2% (${Math.ceil(DEVICES.length * 0.02)}): ` +
        `${halted.detail.state} after ${halted.seconds.toFixed(1)} s, in batch ${halted.detail.currentBatch + 1} of ${halted.detail.batchCount}, ` +
        `${sent} devices sent a command (${halted.detail.counts.succeeded} succeeded, ${halted.detail.counts.failed} failed), ${halted.detail.counts.pending} never sent; ` +
        `reason: ${halted.detail.stateReason}`,
    );

    // Run 2: the canaries succeed; one goes offline within the watch window.
    fleet.setAnswer(() => 'succeed');
    const second = rolloutRequest(key, batchesOf(DEVICES), { maxFailures: { percent: 5 }, watchSeconds: 20 });
    const start = Date.now();
    await createRollout(hub.database, second, 'bench', start);
    for (;;) {
      const detail = (await rolloutDetail(hub.database, second.rolloutId))!;
      if (detail.batches[0]!.devices.every((d) => d.outcome === 'watching')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await fleet.offline([DEVICES[3]!]);
    const regressed = await runUntilEnd(hub.database, second, 'halted', start);
    console.log(
      `run 2: canary ${DEVICES[3]} went offline in its watch window: ${regressed.detail.state} after ${regressed.seconds.toFixed(1)} s, ` +
        `${countSent(regressed.detail)} devices sent a command (the ${CANARIES} canaries), batch 2 released: ${regressed.detail.batches[1]!.devices.some((d) => d.sentAt !== null)}; ` +
        `reason: ${regressed.detail.stateReason}`,
    );
  } finally {
    await fleet.close();
    await rollouts.stop();
    await hub.stop();
    await broker.close();
    dir.cleanup();
  }
}

async function runUntilEnd(
  database: Parameters<typeof createRollout>[0],
  request: ReturnType<typeof rolloutRequest>,
  state: string,
  createdAt?: number,
): Promise<{ detail: HubRolloutDetail; seconds: number }> {
  const start = createdAt ?? Date.now();
  if (createdAt === undefined) await createRollout(database, request, 'bench', start);
  for (;;) {
    const detail = (await rolloutDetail(database, request.rolloutId))!;
    if (detail.state === state) {
      const seconds = (Date.now() - start) / 1000;
      // Let the devices of the halted batch that were sent already report, so the counts are final.
      await new Promise((r) => setTimeout(r, 3000));
      return { detail: (await rolloutDetail(database, request.rolloutId))!, seconds };
    }
    if (detail.state !== 'running') throw new Error(`rollout ended ${detail.state}: ${detail.stateReason}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function countSent(detail: HubRolloutDetail): number {
  return detail.batches.flatMap((b) => b.devices).filter((d) => d.sentAt !== null).length;
}

await main();
