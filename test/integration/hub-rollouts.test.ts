import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addOperator, createApiToken } from '../../src/hub/auth/accounts.js';
import { openHubDatabase, type HubDatabase } from '../../src/hub/db/open.js';
import type { HubRolloutDetail } from '../../src/protocol/hub-rollouts-api.js';
import { testKey } from '../fixtures/command-keys.js';
import { rolloutApi, rolloutRequest } from '../fixtures/hub-rollout-requests.js';
import { startSimulatedFleet, type SimulatedFleet } from '../fixtures/simulated-fleet.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { startHubProcess, writeHubConfig, type HubProcess } from '../helpers/hub-process.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { hubDialects } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';

const DEVICES = Array.from({ length: 24 }, (_, i) => `sim-${String(i + 1).padStart(2, '0')}`);
const key = testKey('ops');

/**
 * The hub's rollouts end to end: a real `fleetlet hub` process (ingest, rollout engine, API) on a real mosquitto and a
 * real database, simulated devices that answer the commands it releases over MQTT, and the API an operator uses.
 */
describe.skipIf(!mosquittoAvailable()).each(hubDialects())('hub rollouts on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  const dir = tempDir('fleetlet-hub-rollouts-');
  let broker: TestBroker;
  let where: { file: string; url?: string };
  let hub: HubProcess;
  let db: HubDatabase;
  let fleet: SimulatedFleet;
  let api: ReturnType<typeof rolloutApi>;
  let viewerToken: string;
  let apiToken: string;

  const startHub = async () => {
    const process = startHubProcess(writeHubConfig({ dir: dir.dir, brokerUrl: broker.url, database: where, replicaId: `ro-${dialect}`, connections: 2 }));
    await process.started();
    await waitFor(() => /"url":"(http:\/\/[^"]+)".*hub API listening/.test(process.output()), 'the hub API to listen', 30_000);
    return { process, url: /"url":"(http:\/\/[^"]+)".*hub API listening/.exec(process.output())![1]! };
  };

  beforeAll(async () => {
    broker = await startMosquitto();
    where = await databases.fresh();
    const started = await startHub();
    hub = started.process;
    db = await openHubDatabase(where);
    await addOperator(db, 'ops', 'operator', 'correct horse battery', Date.now());
    await addOperator(db, 'viewer', 'viewer', 'viewer password 1', Date.now());
    apiToken = (await createApiToken(db, { username: 'ops', name: 'test' }, Date.now())).token;
    api = rolloutApi(started.url, apiToken);
    viewerToken = (await createApiToken(db, { username: 'viewer', name: 'test' }, Date.now())).token;
    fleet = await startSimulatedFleet(broker.url, `sim-fleet-${dialect}`, DEVICES);
    await waitFor(async () => (await db.db.selectFrom('devices').select('device_id').where('presence_state', '=', 'online').execute()).length === DEVICES.length, 'every simulated device online in the hub', 30_000);
  }, 90_000);
  afterAll(async () => {
    await fleet?.close();
    await hub?.kill('SIGTERM');
    await db?.close();
    await broker?.close();
    await databases.close();
    dir.cleanup();
  });

  const detail = async (id: string) => (await api.get(id)).body as unknown as HubRolloutDetail;
  const waitForState = (id: string, state: string, timeoutMs = 30_000) =>
    waitFor(async () => (await api.get(id)).body.state === state, `rollout ${id} ${state}`, timeoutMs).catch(async (err: Error) => {
      throw new Error(`${err.message}; it is ${JSON.stringify(await detail(id))}`);
    });
  const outcomes = (d: HubRolloutDetail) => Object.fromEntries(d.batches.flatMap((b) => b.devices.map((x) => [x.deviceId, x.outcome])));
  const receivedCount = (id: string) => fleet.received.get(id)!.length;

  it('releases a rollout batch by batch (canary first, each batch after the previous one finished) and completes it', async () => {
    const batches = [['sim-01'], ['sim-02', 'sim-03', 'sim-04'], ['sim-05', 'sim-06']];
    const request = rolloutRequest(key, batches);
    const created = await api.create(request);
    expect(created.status).toBe(201);
    expect(created.body.state).toBe('running');
    await waitForState(request.rolloutId, 'completed');
    const done = await detail(request.rolloutId);
    expect(Object.values(outcomes(done)).every((o) => o === 'succeeded')).toBe(true);
    for (const id of batches.flat()) expect(fleet.received.get(id)!.map((e) => e.id)).toEqual([request.commands[id]!.id]);
    for (let i = 1; i < done.batches.length; i++) {
      expect(Date.parse(done.batches[i]!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(done.batches[i - 1]!.finishedAt!));
    }
    expect(done.batches.map((b) => b.state)).toEqual(['done', 'done', 'done']);
  });

  it('halts when the canary fails and releases nothing more', async () => {
    fleet.setAnswer((id) => (id === 'sim-07' ? 'fail' : 'succeed'));
    const request = rolloutRequest(key, [['sim-07'], ['sim-08', 'sim-09']], { maxFailures: { count: 5 } });
    expect((await api.create(request)).status).toBe(201);
    await waitForState(request.rolloutId, 'halted');
    const halted = await detail(request.rolloutId);
    expect(halted.stateReason).toContain('allowed for canaries');
    expect(halted.stateReason).toContain('sim-07 failed: rolled_back');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect([receivedCount('sim-08'), receivedCount('sim-09')]).toEqual([0, 0]);
    expect(outcomes(await detail(request.rolloutId))).toEqual({ 'sim-07': 'failed', 'sim-08': 'pending', 'sim-09': 'pending' });
    // The halt opens one rollout-halted alert; the operator's abort resolves it.
    const alertOf = async () =>
      db.db.selectFrom('alerts').select(['state', 'summary', 'rollout_id']).where('rule', '=', 'rollout-halted').where('subject', '=', `rollout:${request.rolloutId}`).execute();
    await waitFor(async () => (await alertOf()).length === 1, 'the rollout-halted alert', 15_000);
    expect(await alertOf()).toEqual([{ state: 'open', summary: expect.stringContaining('rollout halted: ') as string, rollout_id: request.rolloutId }]);
    expect((await api.act(request.rolloutId, 'abort')).status).toBe(200);
    await waitFor(async () => (await alertOf())[0]?.state === 'resolved', 'the alert resolved by the abort', 15_000);
  });

  it('halts on a health regression: the canary succeeded, then went offline within the watch window, and the next batch is never sent', async () => {
    fleet.setAnswer(() => 'succeed');
    const request = rolloutRequest(key, [['sim-10'], ['sim-11']], { watchSeconds: 30 });
    expect((await api.create(request)).status).toBe(201);
    await waitFor(async () => outcomes(await detail(request.rolloutId))['sim-10'] === 'watching', 'the canary watched after its success', 30_000);
    await fleet.offline(['sim-10']);
    await waitForState(request.rolloutId, 'halted');
    const halted = await detail(request.rolloutId);
    expect(outcomes(halted)).toEqual({ 'sim-10': 'regressed', 'sim-11': 'pending' });
    expect(halted.stateReason).toContain('went offline within the watch window');
    expect(receivedCount('sim-11')).toBe(0);
    await fleet.online(['sim-10']);
  });

  it('counts a crash loop within the watch window as a regression too', async () => {
    const request = rolloutRequest(key, [['sim-12'], ['sim-13']], { watchSeconds: 30 });
    expect((await api.create(request)).status).toBe(201);
    await waitFor(async () => outcomes(await detail(request.rolloutId))['sim-12'] === 'watching', 'the canary watched', 30_000);
    await fleet.crashLoop('sim-12');
    await waitForState(request.rolloutId, 'halted');
    expect((await detail(request.rolloutId)).stateReason).toContain('crash-looped');
    expect(receivedCount('sim-13')).toBe(0);
  });

  it('keeps a device that is offline when its batch comes waiting, goes on with the others, and sends it when it is back', async () => {
    await fleet.offline(['sim-15']);
    await waitFor(async () => (await db.db.selectFrom('devices').select('presence_state').where('device_id', '=', 'sim-15').executeTakeFirst())?.presence_state === 'offline', 'sim-15 offline in the hub');
    const request = rolloutRequest(key, [['sim-14'], ['sim-15', 'sim-16'], ['sim-17']]);
    expect((await api.create(request)).status).toBe(201);
    await waitFor(async () => outcomes(await detail(request.rolloutId))['sim-17'] === 'succeeded', 'the last batch done', 30_000);
    const waiting = await detail(request.rolloutId);
    expect(waiting.state).toBe('running');
    expect(outcomes(waiting)['sim-15']).toBe('waiting-offline');
    expect(receivedCount('sim-15')).toBe(0);
    await fleet.online(['sim-15']);
    await waitForState(request.rolloutId, 'completed');
    expect(outcomes(await detail(request.rolloutId))['sim-15']).toBe('succeeded');
    expect(receivedCount('sim-15')).toBe(1);
  });

  it('pauses (nothing more is released), resumes, and aborts through the API, each audited; a halted rollout resumes only with a new threshold', async () => {
    const request = rolloutRequest(key, [['sim-18'], ['sim-19']], { watchSeconds: 4 });
    expect((await api.create(request)).status).toBe(201);
    await waitFor(async () => outcomes(await detail(request.rolloutId))['sim-18'] === 'watching', 'the canary watched', 30_000);
    expect((await api.act(request.rolloutId, 'pause')).body.state).toBe('paused');
    await waitFor(async () => outcomes(await detail(request.rolloutId))['sim-18'] === 'succeeded', 'the watch to end', 30_000);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(receivedCount('sim-19')).toBe(0);
    expect((await api.act(request.rolloutId, 'resume')).body.state).toBe('running');
    await waitForState(request.rolloutId, 'completed');
    expect(receivedCount('sim-19')).toBe(1);

    fleet.setAnswer((id) => (id === 'sim-20' ? 'fail' : 'succeed'));
    const second = rolloutRequest(key, [['sim-20'], ['sim-21'], ['sim-22']]);
    expect((await api.create(second)).status).toBe(201);
    await waitForState(second.rolloutId, 'halted');
    const refused = await api.act(second.rolloutId, 'resume');
    expect(refused.status).toBe(400);
    expect(refused.body.error).toContain('maxFailures');
    expect((await api.act(second.rolloutId, 'resume', { maxFailures: { count: 1 } })).body.state).toBe('running');
    await waitFor(async () => receivedCount('sim-21') === 1, 'the next batch released after the resume', 30_000);
    expect((await api.act(second.rolloutId, 'abort')).body.state).toBe('aborted');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const aborted = await detail(second.rolloutId);
    expect(outcomes(aborted)['sim-22']).toBe('skipped');
    expect(receivedCount('sim-22')).toBe(0);
    const audited = await db.db.selectFrom('audit_log').select(['action', 'actor']).where('target', 'in', [request.rolloutId, second.rolloutId]).orderBy('id').execute();
    expect(audited.map((a) => a.action)).toEqual(['rollout.create', 'rollout.pause', 'rollout.resume', 'rollout.create', 'rollout.resume', 'rollout.abort']);
    expect(new Set(audited.map((a) => a.actor))).toEqual(new Set(['ops']));
  });

  it('refuses a create whose envelope targets another device, is of another kind, or expires before the deadline, naming the device; a viewer may not create', async () => {
    fleet.setAnswer(() => 'succeed');
    const swapped = rolloutRequest(key, [['sim-23'], ['sim-24']]);
    swapped.commands['sim-23'] = swapped.commands['sim-24']!;
    const refusedSwap = await api.create(swapped);
    expect(refusedSwap.status).toBe(400);
    expect(refusedSwap.body.error).toContain('commands.sim-23');
    expect(refusedSwap.body.error).toContain('not the device sim-23');

    const forgedTarget = rolloutRequest(key, [['sim-23']]);
    // Re-targeted after signing: the hub refuses what it can see; the device would refuse the broken signature.
    forgedTarget.commands['sim-23'] = { ...forgedTarget.commands['sim-23']!, target: { group: 'all' } };
    expect((await api.create(forgedTarget)).body.error).toContain('not the device sim-23');

    const otherKind = rolloutRequest(key, [['sim-23']], { kind: 'agent.upgrade' });
    const refusedKind = await api.create(otherKind);
    expect(refusedKind.status).toBe(400);
    expect(refusedKind.body.error).toContain('is a k3s.upgrade, not the rollout');

    const late = rolloutRequest(key, [['sim-23']]);
    late.deadline = new Date(Date.parse(late.deadline) + 3_600_000).toISOString();
    expect((await api.create(late)).body.error).toContain('before the rollout');

    const missing = rolloutRequest(key, [['sim-23']]);
    delete missing.commands['sim-23'];
    expect((await api.create(missing)).status).toBe(400);

    const fine = rolloutRequest(key, [['sim-23']]);
    const asViewer = await fetch(`${hubUrl()}/api/v1/rollouts`, {
      method: 'POST',
      headers: { authorization: `Bearer ${viewerToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(fine),
    });
    expect(asViewer.status).toBe(403);
    expect((await db.db.selectFrom('rollouts').select('rollout_id').where('rollout_id', 'in', [swapped.rolloutId, forgedTarget.rolloutId, otherKind.rolloutId, late.rolloutId, fine.rolloutId]).execute())).toEqual([]);
    expect(receivedCount('sim-23') + receivedCount('sim-24')).toBe(0);
  });

  it('goes on after a hub restart: what was answered is not released again, what was marked sent but never arrived is', async () => {
    const request = rolloutRequest(key, [['sim-01'], ['sim-02', 'sim-03'], ['sim-04', 'sim-05']]);
    const before = new Map(DEVICES.map((id) => [id, receivedCount(id)]));
    let dropped = false;
    fleet.setAnswer((id) => {
      if (id === 'sim-02' && !dropped) {
        dropped = true;
        return 'drop';
      }
      return id === 'sim-04' || id === 'sim-05' ? 'silent' : 'succeed';
    });
    expect((await api.create(request)).status).toBe(201);
    await waitFor(async () => {
      const o = outcomes(await detail(request.rolloutId));
      return o['sim-03'] === 'succeeded' && o['sim-02'] === 'sent';
    }, 'batch 2 released, sim-02 without an answer', 30_000);
    await hub.kill('SIGKILL');
    fleet.setAnswer(() => 'succeed');
    const restarted = await startHub();
    hub = restarted.process;
    api = rolloutApi(restarted.url, apiToken);
    await waitForState(request.rolloutId, 'completed', 45_000);
    const sent = (id: string) => fleet.received.get(id)!.slice(before.get(id)).map((e) => e.id);
    expect(sent('sim-01')).toEqual([request.commands['sim-01']!.id]);
    expect(sent('sim-03')).toEqual([request.commands['sim-03']!.id]);
    // Dropped on its way: published again after the restart, with the same signed envelope.
    expect(sent('sim-02')).toEqual([request.commands['sim-02']!.id, request.commands['sim-02']!.id]);
    expect([sent('sim-04').length, sent('sim-05').length]).toEqual([1, 1]);
  }, 90_000);

  const hubUrl = () => /"url":"(http:\/\/[^"]+)".*hub API listening/.exec(hub.output())![1]!;
});
