import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addOperator, createApiToken } from '../../src/hub/auth/accounts.js';
import { openHubDatabase, type HubDatabase } from '../../src/hub/db/open.js';
import type { HubRolloutDetail } from '../../src/protocol/hub-rollouts-api.js';
import { testKey } from '../fixtures/command-keys.js';
import { startTestDevice, type TestDevice } from '../fixtures/command-device.js';
import { rolloutApi, rolloutRequest } from '../fixtures/hub-rollout-requests.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { startHubProcess, writeHubConfig, type HubProcess } from '../helpers/hub-process.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';
import { join } from 'node:path';

const key = testKey('ops');

/**
 * Real agents (built by the composition root, k3s off) take the commands the hub releases: they verify the
 * operator's signature themselves, so an envelope changed after signing, which the hub cannot tell, is refused by
 * the device and halts the rollout; the genuine one passes every check but the last (k3s is not supervised here).
 */
describe.skipIf(!mosquittoAvailable())('hub rollouts to real agents', () => {
  const databases = new HubDatabases('sqlite');
  const dir = tempDir('fleetlet-hub-rollout-agents-');
  let broker: TestBroker;
  let hub: HubProcess;
  let db: HubDatabase;
  let api: ReturnType<typeof rolloutApi>;
  const devices: TestDevice[] = [];

  beforeAll(async () => {
    broker = await startMosquitto();
    const where = await databases.fresh();
    hub = startHubProcess(writeHubConfig({ dir: dir.dir, brokerUrl: broker.url, database: where, replicaId: 'agents', connections: 2 }));
    await hub.started();
    await waitFor(() => /"url":"(http:\/\/[^"]+)".*hub API listening/.test(hub.output()), 'the hub API to listen', 30_000);
    db = await openHubDatabase(where);
    await addOperator(db, 'ops', 'operator', 'correct horse battery', Date.now());
    api = rolloutApi(/"url":"(http:\/\/[^"]+)".*hub API listening/.exec(hub.output())![1]!, (await createApiToken(db, { username: 'ops', name: 't' }, Date.now())).token);
    for (const deviceId of ['agent-a', 'agent-b']) {
      devices.push(await startTestDevice({ brokerUrl: broker.url, dir: join(dir.dir, deviceId), deviceId, trustedKeys: [{ id: key.id, publicKey: key.publicBase64 }] }));
    }
    await waitFor(async () => (await db.db.selectFrom('devices').select('device_id').where('presence_state', '=', 'online').execute()).length === 2, 'both agents online in the hub', 30_000);
  }, 120_000);
  afterAll(async () => {
    for (const device of devices) await device.stop();
    await hub?.kill('SIGTERM');
    await db?.close();
    await broker?.close();
    await databases.close();
    dir.cleanup();
  });

  const detail = async (id: string) => (await api.get(id)).body as unknown as HubRolloutDetail;
  const halted = async (id: string) => {
    await waitFor(async () => (await api.get(id)).body.state === 'halted', `rollout ${id} halted`, 30_000);
    return detail(id);
  };

  it('an envelope changed after signing passes the hub but not the device: refused as bad_signature, the rollout halts at the canary', async () => {
    const request = rolloutRequest(key, [['agent-a'], ['agent-b']]);
    const signed = request.commands['agent-a']!;
    request.commands['agent-a'] = { ...signed, args: { version: 'v1.99.0+k3s1' } };
    expect((await api.create(request)).status).toBe(201);
    const done = await halted(request.rolloutId);
    expect(done.batches[0]!.devices[0]!.detail).toMatch(/^bad_signature/);
    expect(done.batches[1]!.devices[0]!.outcome).toBe('pending');
  });

  it('the envelope as signed reaches the agent, whose checks it passes up to the last one (k3s.upgrade is disabled where k3s is not supervised)', async () => {
    const request = rolloutRequest(key, [['agent-b']]);
    expect((await api.create(request)).status).toBe(201);
    const done = await halted(request.rolloutId);
    const device = done.batches[0]!.devices[0]!;
    expect(device.outcome).toBe('failed');
    // `disabled` is the device's last check, after the signature, the target and the expiry (REJECT_REASONS order).
    expect(device.detail).toMatch(/^disabled: k3s.upgrade is not available/);
  });
});
