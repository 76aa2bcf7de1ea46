import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArrivalRecorder } from '../fixtures/outbox-mqtt.js';
import { waitFor } from '../helpers/wait.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { bundleFixture } from '../helpers/bundle-fixture.js';

/** A real process on a full disk: it keeps running, sheds status, keeps every event, and says so in its status. */
const CHILD_BUNDLE = join(REPO_ROOT, 'dist/outbox-diskfull-child.cjs');
const TOPIC_ROOT = 'diskfull-test/devices/d1';

describe.skipIf(!mosquittoAvailable())('outbox on a full disk, in a real process', () => {
  let broker: TestBroker;
  let state: { dir: string; cleanup: () => void };
  let child: ChildProcessWithoutNullStreams | undefined;

  beforeAll(async () => {
    await bundleFixture('outbox-diskfull-child.ts', CHILD_BUNDLE);
    broker = await startMosquitto({ globalLines: ['max_queued_messages 0'] });
    state = tempDir('fleetlet-outbox-diskfull-');
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await broker?.close();
    state?.cleanup();
  });

  it('keeps running, sheds status, delivers every event, and reports the condition', { timeout: 60_000 }, async () => {
    child = spawn(process.execPath, [CHILD_BUNDLE], {
      env: { PATH: process.env.PATH, DISKFULL_STATE_DIR: state.dir, DISKFULL_BROKER_URL: broker.url, DISKFULL_TOPIC_ROOT: TOPIC_ROOT },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await waitFor(() => stdout.includes('LOGGED'), 'the child to fill its disk', 30_000);
    const filled = /FILLED diskFull=(\d+) droppedStatus=(\d+) events=(\d+)/.exec(stdout);
    expect(filled, stderr).not.toBeNull();
    const [diskFull, droppedStatus, events] = filled!.slice(1).map(Number) as [number, number, number];
    expect(diskFull).toBeGreaterThan(0);
    expect(droppedStatus).toBeGreaterThan(500);
    expect(events).toBe(150);
    expect(stdout).toMatch(/LOGGED .*outbox\.disk_full/);
    const eventIds = [...stdout.matchAll(/^EVENT (\S+)$/gm)].map((m) => m[1]!);
    expect(eventIds).toHaveLength(150);

    const arrivals = await ArrivalRecorder.start(broker.url, `${TOPIC_ROOT}/#`);
    try {
      child.stdin.write('connect\n');
      await waitFor(() => eventIds.every((id) => arrivals.ids().has(id)), 'every event at the subscriber', 30_000);
      // The newest status is sent first on connect and carries the counts, disk-full included.
      await waitFor(() => arrivals.arrivals.some((a) => a.topic.endsWith('/status')), 'a status', 10_000);
      const firstStatus = arrivals.arrivals.find((a) => a.topic.endsWith('/status'))!;
      expect(firstStatus.body.outboxDrops).toMatchObject({ diskFull: expect.any(Number), status: expect.any(Number) });
      expect((firstStatus.body.outboxDrops as { diskFull: number }).diskFull).toBeGreaterThan(0);
      // Still full and still working: new statuses keep arriving.
      const seen = arrivals.arrivals.length;
      await waitFor(() => arrivals.arrivals.length >= seen + 20, 'statuses enqueued on the full disk', 20_000);
      expect(child.exitCode).toBeNull();
    } finally {
      await arrivals.close();
    }
  });
});
