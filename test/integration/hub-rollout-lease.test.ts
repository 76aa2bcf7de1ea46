import { afterAll, describe, expect, it } from 'vitest';
import { createRollout } from '../../src/hub/rollouts/create-rollout.js';
import { RolloutEngine, type CommandPublisher } from '../../src/hub/rollouts/rollout-engine.js';
import { createLogger } from '../../src/lib/logger.js';
import { testKey } from '../fixtures/command-keys.js';
import { rolloutRequest } from '../fixtures/hub-rollout-requests.js';
import { deviceRow } from '../helpers/hub-api.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { hubDialects } from '../helpers/postgres.js';

/** Records what an engine published; always connected. */
class RecordingPublisher implements CommandPublisher {
  readonly connected = true;
  readonly published: string[] = [];
  async publish(deviceId: string): Promise<void> {
    this.published.push(deviceId);
  }
}

describe.each(hubDialects())('two hub replicas driving rollouts on one %s database', (dialect) => {
  const databases = new HubDatabases(dialect);
  afterAll(() => databases.close());

  it('lets only the lease holder release commands; the other takes over once the lease expired, publishing again what has no result', async () => {
    const hub = await databases.open();
    let clock = Date.now();
    const now = () => clock;
    await hub.db.insertInto('devices').values(['d1', 'd2', 'd3'].map((id) => deviceRow(id))).execute();
    const request = rolloutRequest(testKey('ops'), [['d1'], ['d2', 'd3']]);
    await createRollout(hub, request, 'ops', clock);
    const log = createLogger({ level: 'silent' });
    const engine = (replicaId: string, publisher: RecordingPublisher) => new RolloutEngine({ hub, publisher, replicaId, log, leaseMs: 5000, now });
    const pa = new RecordingPublisher();
    const pb = new RecordingPublisher();
    const a = engine('replica-a', pa);
    const b = engine('replica-b', pb);
    try {
      await a.tickOnce();
      await b.tickOnce();
      expect([a.leader, b.leader]).toEqual([true, false]);
      expect([pa.published, pb.published]).toEqual([['d1'], []]);

      clock += 3000;
      await b.tickOnce();
      await a.tickOnce();
      expect([a.leader, b.leader]).toEqual([true, false]);

      // Replica a dies without giving the lease up: b waits for it to expire, then drives, and publishes d1 again,
      // which has no result (a may have died before publishing it).
      clock += 3000;
      await b.tickOnce();
      expect(b.leader).toBe(false);
      clock += 2500;
      await b.tickOnce();
      expect(b.leader).toBe(true);
      expect(pb.published).toEqual(['d1']);
      await a.tickOnce();
      expect(a.leader).toBe(false);

      await hub.db
        .insertInto('command_results')
        .values({ device_id: 'd1', message_id: 'm-1', command_id: request.commands.d1!.id, command_type: 'k3s.upgrade', status: 'succeeded', reason: null, at_ms: clock, received_at_ms: clock, payload_json: '{}' })
        .execute();
      clock += 1000;
      await a.tickOnce();
      await b.tickOnce();
      expect(pa.published).toEqual(['d1']);
      expect(pb.published.sort()).toEqual(['d1', 'd2', 'd3']);

      // A clean stop gives the lease up: the other replica drives at its next tick.
      await b.stop();
      clock += 1000;
      await a.tickOnce();
      expect(a.leader).toBe(true);
    } finally {
      await a.stop();
      await b.stop();
      await hub.close();
    }
  });
});
