import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { startHub, type RunningHub } from '../../src/hub/hub-service.js';
import { createRollout } from '../../src/hub/rollouts/create-rollout.js';
import { rolloutDetail } from '../../src/hub/rollouts/rollout-views.js';
import { startRollouts, type RunningRollouts } from '../../src/hub/rollouts/run-rollouts.js';
import { createLogger } from '../../src/lib/logger.js';
import type { HubRolloutDetail } from '../../src/protocol/hub-rollouts-api.js';
import { testKey } from '../fixtures/command-keys.js';
import { rolloutRequest } from '../fixtures/hub-rollout-requests.js';
import { startSimulatedFleet, type SimulatedFleet } from '../fixtures/simulated-fleet.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const DEVICES = Array.from({ length: 1000 }, (_, i) => `scale-${String(i).padStart(4, '0')}`);
const CANARIES = 10;
const key = testKey('ops');

function batchesOf(ids: string[]): string[][] {
  const batches = [ids.slice(0, CANARIES)];
  for (let i = CANARIES; i < ids.length; i += 100) batches.push(ids.slice(i, i + 100));
  return batches;
}

/**
 * A thousand simulated devices answering over a real mosquitto, the hub's ingest and rollout engine (with its MQTT
 * publisher) on SQLite: the rollout halts at its threshold, and a canary's health regression halts it before the
 * first batch.
 */
describe.skipIf(!mosquittoAvailable())('hub rollouts to 1,000 simulated devices', () => {
  const dir = tempDir('fleetlet-hub-rollout-scale-');
  let broker: TestBroker;
  let hub: RunningHub;
  let rollouts: RunningRollouts;
  let fleet: SimulatedFleet;

  beforeAll(async () => {
    broker = await startMosquitto({ globalLines: ['max_queued_messages 100000'] });
    const config = ConfigSchema.parse({
      broker: { url: broker.url, allowPlaintext: true, topicRoot: 'fleetlet/v1' },
      hub: { database: { file: join(dir.dir, 'hub.db') }, replicaId: 'scale', shareGroup: `scale-${randomBytes(3).toString('hex')}`, connections: 4 },
    });
    const log = createLogger({ level: 'silent' });
    hub = await startHub({ config, log });
    await hub.ready();
    rollouts = startRollouts({ database: hub.database, replicaId: hub.replicaId, config, log });
    fleet = await startSimulatedFleet(broker.url, 'scale-fleet', DEVICES);
    await waitFor(
      async () => Number((await hub.database.db.selectFrom('devices').select((eb) => eb.fn.countAll<number>().as('n')).where('presence_state', '=', 'online').executeTakeFirstOrThrow()).n) === DEVICES.length,
      'every device online in the hub',
      30_000,
    );
  }, 60_000);
  afterAll(async () => {
    await fleet?.close();
    await rollouts?.stop();
    await hub?.stop();
    await broker?.close();
    dir.cleanup();
  });

  const waitForState = async (rolloutId: string, state: string): Promise<HubRolloutDetail> => {
    let detail: HubRolloutDetail | undefined;
    await waitFor(async () => (detail = await rolloutDetail(hub.database, rolloutId))?.state === state, () => `${state}: ${detail?.state} ${detail?.stateReason}`, 45_000);
    return detail!;
  };

  it('halts a rollout with 5% failing devices at its 2% threshold, with the later batches never sent', async () => {
    const failing = new Set(DEVICES.filter((_, i) => i >= CANARIES && i % 20 === 0));
    fleet.setAnswer((id) => (failing.has(id) ? 'fail' : 'succeed'));
    const request = rolloutRequest(key, batchesOf(DEVICES), { maxFailures: { percent: 2 } });
    await createRollout(hub.database, request, 'ops', Date.now());
    const halted = await waitForState(request.rolloutId, 'halted');
    expect(halted.stateReason).toMatch(/^\d+ device\(s\) failed or regressed, more than the 20 allowed/);
    // 20 failures allowed, 5 per batch of 100: the fifth batch after the canaries crosses the threshold.
    expect(halted.currentBatch).toBe(5);
    expect(halted.batches.slice(6).every((b) => b.devices.every((d) => d.sentAt === null && d.outcome === 'pending'))).toBe(true);
    expect(DEVICES.slice(CANARIES + 500).every((id) => fleet.received.get(id)!.length === 0)).toBe(true);
  }, 60_000);

  it('halts before the first batch when a canary regresses in its watch window', async () => {
    fleet.setAnswer(() => 'succeed');
    const request = rolloutRequest(key, batchesOf(DEVICES), { maxFailures: { percent: 5 }, watchSeconds: 30 });
    await createRollout(hub.database, request, 'ops', Date.now());
    await waitFor(async () => (await rolloutDetail(hub.database, request.rolloutId))!.batches[0]!.devices.every((d) => d.outcome === 'watching'), 'the canaries watched', 30_000);
    await fleet.k3sUnhealthy(DEVICES[3]!);
    const halted = await waitForState(request.rolloutId, 'halted');
    expect(halted.stateReason).toContain(`${DEVICES[3]} regressed: succeeded, then reported k3s unhealthy`);
    expect(halted.batches.slice(1).every((b) => b.devices.every((d) => d.sentAt === null))).toBe(true);
  }, 60_000);
});
