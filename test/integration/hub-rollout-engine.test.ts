import { afterAll, describe, expect, it } from 'vitest';
import type { HubDatabase } from '../../src/hub/db/open.js';
import { createRollout } from '../../src/hub/rollouts/create-rollout.js';
import { applyRolloutAction } from '../../src/hub/rollouts/rollout-actions.js';
import { RolloutEngine, type CommandPublisher } from '../../src/hub/rollouts/rollout-engine.js';
import { rolloutDetail } from '../../src/hub/rollouts/rollout-views.js';
import { createLogger } from '../../src/lib/logger.js';
import type { HubRolloutSummary } from '../../src/protocol/hub-rollouts-api.js';
import { testKey } from '../fixtures/command-keys.js';
import { rolloutRequest } from '../fixtures/hub-rollout-requests.js';
import { deviceRow } from '../helpers/hub-api.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { hubDialects } from '../helpers/postgres.js';

class RecordingPublisher implements CommandPublisher {
  readonly connected = true;
  readonly published: string[] = [];
  async publish(deviceId: string): Promise<void> {
    this.published.push(deviceId);
  }
}

const key = testKey('ops');

/** The engine on a real database with a clock the test moves: deadlines, timeouts and what counts as a final result. */
describe.each(hubDialects())('hub rollout engine on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  afterAll(() => databases.close());

  async function setup(devices: { id: string; online: boolean }[], request: ReturnType<typeof rolloutRequest>) {
    const hub = await databases.open();
    let clock = Date.now();
    await hub.db.insertInto('devices').values(devices.map((d) => deviceRow(d.id, { presence_state: d.online ? 'online' : 'offline' }))).execute();
    await createRollout(hub, request, 'ops', clock);
    const publisher = new RecordingPublisher();
    const changes: HubRolloutSummary[] = [];
    const engine = new RolloutEngine({ hub, publisher, replicaId: 'engine-test', log: createLogger({ level: 'silent' }), now: () => clock, onStateChange: (r) => changes.push(r) });
    return {
      hub,
      publisher,
      changes,
      tick: async (advanceMs = 1000) => {
        clock += advanceMs;
        await engine.tickOnce();
      },
      now: () => clock,
      detail: async () => (await rolloutDetail(hub, request.rolloutId))!,
      close: async () => {
        await engine.stop();
        await hub.close();
      },
    };
  }

  const result = (hub: HubDatabase, deviceId: string, commandId: string, status: string, at: number, reason: string | null = null) =>
    hub.db
      .insertInto('command_results')
      .values({ device_id: deviceId, message_id: `${deviceId}-${status}-${at}`, command_id: commandId, command_type: 'k3s.upgrade', status, reason, at_ms: at, received_at_ms: at, payload_json: JSON.stringify({ detail: `${status} detail` }) })
      .execute();
  const outcomes = (d: Awaited<ReturnType<typeof rolloutDetail>>) => Object.fromEntries(d!.batches.flatMap((b) => b.devices.map((x) => [x.deviceId, x.outcome])));

  it('expires at the deadline: a device offline since its batch came is skipped, and onStateChange says so', async () => {
    const request = rolloutRequest(key, [['e1'], ['e2', 'e3']], { deadline: new Date(Date.now() + 60_000).toISOString() });
    const t = await setup([{ id: 'e1', online: true }, { id: 'e2', online: true }, { id: 'e3', online: false }], request);
    try {
      await t.tick();
      await result(t.hub, 'e1', request.commands.e1!.id, 'succeeded', t.now());
      await t.tick();
      await t.tick();
      expect(outcomes(await t.detail())).toEqual({ e1: 'succeeded', e2: 'sent', e3: 'waiting-offline' });
      await result(t.hub, 'e2', request.commands.e2!.id, 'succeeded', t.now());
      await t.tick();
      expect((await t.detail()).state).toBe('running');
      await t.tick(60_000);
      const expired = await t.detail();
      expect([expired.state, outcomes(expired)]).toEqual(['expired', { e1: 'succeeded', e2: 'succeeded', e3: 'skipped' }]);
      expect(t.publisher.published).toEqual(['e1', 'e2']);
      expect(t.changes.map((c) => c.state)).toEqual(['expired']);
    } finally {
      await t.close();
    }
  });

  it('counts a device without a final result within deviceTimeoutSeconds as failed, and a rejected one too', async () => {
    const request = rolloutRequest(key, [['t1', 't2']], { canaries: false, maxFailures: { count: 5 }, deviceTimeoutSeconds: 30 });
    const t = await setup([{ id: 't1', online: true }, { id: 't2', online: true }], request);
    try {
      await t.tick();
      await result(t.hub, 't1', request.commands.t1!.id, 'accepted', t.now());
      await result(t.hub, 't2', request.commands.t2!.id, 'rejected', t.now(), 'expired');
      await t.tick(29_000);
      expect(outcomes(await t.detail())).toEqual({ t1: 'sent', t2: 'failed' });
      await t.tick(2000);
      const done = await t.detail();
      expect(outcomes(done)).toEqual({ t1: 'failed', t2: 'failed' });
      expect(done.batches[0]!.devices.map((d) => d.detail)).toEqual(['no result within 30 s', 'expired: rejected detail']);
      expect(done.state).toBe('completed');
    } finally {
      await t.close();
    }
  });

  it("takes neither a `replayed` refusal nor another device's result for the command as its answer", async () => {
    const request = rolloutRequest(key, [['p1']], { canaries: false });
    const t = await setup([{ id: 'p1', online: true }, { id: 'p2', online: true }], request);
    try {
      await t.tick();
      await result(t.hub, 'p1', request.commands.p1!.id, 'rejected', t.now(), 'replayed');
      await result(t.hub, 'p2', request.commands.p1!.id, 'failed', t.now(), 'forged');
      await t.tick();
      expect(outcomes(await t.detail())).toEqual({ p1: 'sent' });
      await result(t.hub, 'p1', request.commands.p1!.id, 'succeeded', t.now());
      await t.tick();
      expect([(await t.detail()).state, outcomes(await t.detail())]).toEqual(['completed', { p1: 'succeeded' }]);
      expect(t.changes.map((c) => c.state)).toEqual(['completed']);
    } finally {
      await t.close();
    }
  });

  it('halts on a k3s-unhealthy status within the watch window, reporting it through onStateChange; one after the window does not count', async () => {
    const request = rolloutRequest(key, [['w1', 'w2'], ['w3']], { watchSeconds: 60 });
    const t = await setup(['w1', 'w2', 'w3'].map((id) => ({ id, online: true })), request);
    try {
      await t.tick();
      await result(t.hub, 'w1', request.commands.w1!.id, 'succeeded', t.now());
      await result(t.hub, 'w2', request.commands.w2!.id, 'succeeded', t.now());
      await t.tick();
      expect(outcomes(await t.detail())).toEqual({ w1: 'watching', w2: 'watching', w3: 'pending' });
      await t.tick(61_000);
      expect(outcomes(await t.detail())).toEqual({ w1: 'succeeded', w2: 'succeeded', w3: 'sent' });
      // Too late to count: w1's watch ended.
      await t.hub.db.insertInto('status_samples').values({ device_id: 'w1', sampled_at_ms: t.now(), received_at_ms: t.now(), seq: 1, historical: 0, cpu_percent: null, memory_available_bytes: null, memory_total_bytes: null, temperature_c: null, k3s_healthy: 0, disk_free_bytes: null }).execute();
      await result(t.hub, 'w3', request.commands.w3!.id, 'succeeded', t.now());
      await t.tick();
      await t.hub.db.insertInto('status_samples').values({ device_id: 'w3', sampled_at_ms: t.now() + 10, received_at_ms: t.now() + 10, seq: 1, historical: 0, cpu_percent: null, memory_available_bytes: null, memory_total_bytes: null, temperature_c: null, k3s_healthy: 0, disk_free_bytes: null }).execute();
      await t.tick();
      const halted = await t.detail();
      expect([halted.state, outcomes(halted)]).toEqual(['halted', { w1: 'succeeded', w2: 'succeeded', w3: 'regressed' }]);
      expect(t.changes.map((c) => [c.state, c.stateReason?.includes('w3 regressed: succeeded, then reported k3s unhealthy')])).toEqual([['halted', true]]);
      // An operator's change is heard of too: the alert for the halt can end.
      await applyRolloutAction(t.hub, request.rolloutId, 'abort', {}, 'ops', t.now());
      await t.tick();
      expect(t.changes.map((c) => [c.state, c.stateReason])).toEqual([['halted', expect.any(String)], ['aborted', 'aborted by ops']]);
    } finally {
      await t.close();
    }
  });
});
