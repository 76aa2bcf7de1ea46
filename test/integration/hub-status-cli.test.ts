import { afterAll, describe, expect, it } from 'vitest';
import { Topics } from '../../src/protocol/topics.js';
import { openHubDatabase } from '../../src/hub/db/open.js';
import { classifyMessage } from '../../src/hub/ingest/classify.js';
import { commitBatch } from '../../src/hub/ingest/commit-batch.js';
import { runCli } from '../helpers/cli.js';
import { writeHubConfig } from '../helpers/hub-process.js';
import { tempDir } from '../helpers/paths.js';
import { inventoryPayload, presencePayload, statusPayload, topic, TOPIC_ROOT } from '../fixtures/hub-messages.js';

describe('fleetlet hub status', () => {
  const dir = tempDir('fleetlet-hub-cli-');
  afterAll(() => dir.cleanup());

  it('reports devices, recent ingest, rejects and size from the database', async () => {
    const file = `${dir.dir}/hub.db`;
    const hub = await openHubDatabase({ file });
    const now = Date.now();
    const options = { topics: new Topics(TOPIC_ROOT), maxMessageBytes: 65536 };
    const messages = [
      { topic: topic('pi-1', 'presence'), payload: JSON.stringify(presencePayload('online', 1, new Date(now))) },
      { topic: topic('pi-2', 'presence'), payload: JSON.stringify(presencePayload('offline', 1, new Date(now), 'stopped')) },
      { topic: topic('pi-1', 'inventory'), payload: JSON.stringify(inventoryPayload('pi-1', 'sha256:aa', new Date(now))) },
      { topic: topic('pi-1', 'status'), payload: JSON.stringify(statusPayload()) },
      { topic: topic('pi-2', 'status'), payload: JSON.stringify(statusPayload()) },
      { topic: topic('pi-2', 'status'), payload: 'not json' },
    ];
    const items = messages.map((m) => classifyMessage(options, { topic: m.topic, payload: Buffer.from(m.payload), retain: false }, now));
    await commitBatch(hub, items, { conflictWindowMs: 60_000 });
    await hub.close();
    const config = writeHubConfig({ dir: dir.dir, brokerUrl: 'mqtt://127.0.0.1:1', database: { file }, replicaId: 'cli' });

    const json = runCli(['hub', 'status', '--json', '--config', config]);
    expect(json.code, json.stderr).toBe(0);
    const status = JSON.parse(json.stdout);
    expect(status.devices).toEqual({ total: 2, online: 1, offline: 1, identityConflicts: 0, health: { ok: 2 } });
    expect(status).toMatchObject({ storedLastMinute: 2, rejectedTotal: 1, rows: { status_samples: 2, rejected_messages: 1 } });
    expect(status.database.bytes).toBeGreaterThan(0);

    const text = runCli(['hub', 'status', '--config', config]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('devices     2 (1 online, 1 offline; health: 2 ok)');
    expect(text.stdout).toContain('rejected    1 invalid messages in all (1 kept aside)');
  });
});
