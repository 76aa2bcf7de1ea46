import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { CommandHandler } from '../../src/commands/handler.js';
import { outboxWithWriteProgress, ProgressMonitor } from '../../src/daemon/progress-monitor.js';
import { SystemdNotifier } from '../../src/daemon/systemd-notify.js';
import type { Heartbeat } from '../../src/lib/heartbeat.js';
import { openDatabase } from '../../src/store/db.js';
import { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/lib/logger.js';
import { Topics } from '../../src/protocol/topics.js';
import { buildTelemetryPart } from '../../src/telemetry/create-telemetry.js';
import { waitFor } from '../helpers/wait.js';
import { announced, brokerConfig, capturingLogger, makeLink } from '../helpers/link.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { routerRig } from '../fixtures/command-router-setup.js';

/** A heartbeat that remembers when it was beaten, for the parts' own hooks. */
function recordingHeartbeat(): Heartbeat & { beats: number[]; marks: string[] } {
  const beats: number[] = [];
  const marks: string[] = [];
  return {
    beats,
    marks,
    beat: () => void beats.push(Date.now()),
    idle: () => void marks.push('idle'),
    busyFor: (ms) => void marks.push(`busy:${ms}`),
  };
}

async function notifyReceiver(): Promise<{ socket: string; received: () => string }> {
  const { dir, cleanup } = tempDir('fleetlet-watchdog-');
  const socket = join(dir, 'notify.sock');
  const receiver: ChildProcess = spawn('python3', [join(REPO_ROOT, 'test/fixtures/notify-receiver.py'), socket]);
  let received = '';
  receiver.stdout!.on('data', (chunk: Buffer) => (received += chunk.toString()));
  onTestFinished(cleanup);
  onTestFinished(() => void receiver.kill());
  await waitFor(() => received.includes('listening'), 'the notify socket');
  return { socket, received: () => received };
}

const count = (text: string, pattern: RegExp) => (text.match(pattern) ?? []).length;

describe('the systemd watchdog', () => {
  it('is withheld while a part shows no progress, names the part once, and resumes when it moves again', async () => {
    const { socket, received } = await notifyReceiver();
    const { logger, lines } = capturingLogger();
    const monitor = new ProgressMonitor();
    const sampler = monitor.register('telemetry-sampler', 400);
    const quiet = monitor.register('command-queue', 400);
    quiet.idle();
    let ticking: NodeJS.Timeout | undefined = setInterval(() => sampler.beat(), 50);
    onTestFinished(() => clearInterval(ticking));
    // A 200 ms watchdog: a check (and, when healthy, a ping) every 100 ms.
    const part = new SystemdNotifier({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: '200000', PATH: process.env.PATH }, logger).asPart(monitor);
    await part.start();
    onTestFinished(() => part.stop());

    await waitFor(() => count(received(), /WATCHDOG=1/g) >= 3, 'pings while every part progresses');

    clearInterval(ticking);
    await waitFor(() => received().includes('STATUS=no progress from telemetry-sampler'), 'the stuck part in STATUS');
    // A ping sent just before the part went stale may still be on its way (each is a systemd-notify process).
    await new Promise((resolve) => setTimeout(resolve, 500));
    const pingsWhenStuck = count(received(), /WATCHDOG=1/g);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(count(received(), /WATCHDOG=1/g)).toBe(pingsWhenStuck);
    const withheld = lines().filter((line) => line.includes('withholding the watchdog'));
    expect(withheld).toHaveLength(1);
    expect(JSON.parse(withheld[0]!)).toMatchObject({ stuck: [{ name: 'telemetry-sampler', allowedMs: 400 }] });

    ticking = setInterval(() => sampler.beat(), 50);
    await waitFor(() => count(received(), /WATCHDOG=1/g) >= pingsWhenStuck + 2, 'pings once the part moves again');
    expect(received().lastIndexOf('STATUS=running')).toBeGreaterThan(received().indexOf('STATUS=no progress'));
    expect(lines().some((line) => line.includes('watchdog pings resumed'))).toBe(true);
  });
});

describe('progress of the parts', () => {
  it('an idle part is never stuck, a silent one is after its allowance, a long task until its own deadline', () => {
    const clock = { ms: 0 };
    const monitor = new ProgressMonitor(() => clock.ms);
    const queue = monitor.register('command-queue', 1000);
    const sampler = monitor.register('telemetry-sampler', 1000);
    queue.idle();
    clock.ms = 1001;
    expect(monitor.stuck()).toEqual([{ name: 'telemetry-sampler', silentMs: 1001, allowedMs: 1000 }]);
    sampler.beat();
    queue.busyFor(60_000);
    clock.ms = 60_000;
    expect(monitor.stuck().map((p) => p.name)).toEqual(['telemetry-sampler']);
    sampler.beat();
    clock.ms = 61_002;
    expect(monitor.stuck().map((p) => p.name)).toEqual(['command-queue', 'telemetry-sampler']);
  });

  it('the command queue is idle with nothing to do, busy until a running command expires, and idle again after', async () => {
    const { dir, cleanup } = tempDir('fleetlet-watchdog-router-');
    onTestFinished(cleanup);
    const operator = testKey('ops');
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const hanging: CommandHandler<'k3s.restart'> = {
      type: 'k3s.restart',
      onInterrupted: 'fail',
      run: async () => {
        await gate;
        return { status: 'succeeded' };
      },
    };
    const now = Date.now();
    const rig = routerRig({ stateDir: dir, operator, handlers: [hanging], settings: { clockSkewMs: 5_000 }, now: () => now });
    onTestFinished(() => rig.close());
    const queue = recordingHeartbeat();
    rig.router.reportProgress(queue);
    expect(queue.marks).toEqual(['idle']);
    rig.router.receive(encode(signedCommand(operator, { type: 'k3s.restart', expiresAt: now + 60_000 }, now)));
    await waitFor(() => queue.marks.length === 2, 'the command to start');
    // Until it expires, plus the clock-skew allowance: a handler still running after that is wedged.
    expect(queue.marks[1]).toBe('busy:65000');
    release();
    await rig.router.idle();
    expect(queue.marks).toEqual(['idle', 'busy:65000', 'idle']);
    expect(rig.outbox.results().map((r) => r.status)).toEqual(['accepted', 'succeeded']);
  });

  it('the state database beats for every write it answered, a full disk included, and not for one that failed', () => {
    const { dir, cleanup } = tempDir('fleetlet-watchdog-db-');
    onTestFinished(cleanup);
    const { db } = openDatabase({ stateDir: dir, fleetletVersion: 'test' });
    const roomy = { maxRows: 1_000_000, maxBytes: 1 << 30 };
    const store = new SqliteOutbox(db, {
      limits: { budgets: { status: roomy, event: roomy, result: roomy }, maxTotalBytes: 1 << 30, maxRecordBytes: 1 << 16 },
    });
    const writes = recordingHeartbeat();
    const outbox = outboxWithWriteProgress(store, writes);
    outbox.enqueue({ class: 'event', topic: 't/events', payload: { n: 1 } });
    expect(writes.beats).toHaveLength(1);
    // A database that may not grow: the outbox absorbs SQLITE_FULL (sheds, counts) and the write was answered.
    db.pragma(`max_page_count = ${Number(db.pragma('page_count', { simple: true }))}`);
    for (let i = 0; i < 50; i++) outbox.enqueue({ class: 'status', topic: 't/status', payload: { pad: 'p'.repeat(2000) } });
    expect(store.stats().diskFull).toBeGreaterThan(0);
    expect(writes.beats).toHaveLength(51);
    db.close();
    expect(() => outbox.enqueue({ class: 'event', topic: 't/events', payload: { n: 2 } })).toThrow();
    expect(writes.beats).toHaveLength(51);
  });

  it('the sampler beats after every sample it queued, and not after one that failed', () => {
    const { dir, cleanup } = tempDir('fleetlet-watchdog-sampler-');
    onTestFinished(cleanup);
    const { db } = openDatabase({ stateDir: dir, fleetletVersion: 'test' });
    const roomy = { maxRows: 1000, maxBytes: 1 << 20 };
    const outbox = new SqliteOutbox(db, {
      limits: { budgets: { status: roomy, event: roomy, result: roomy }, maxTotalBytes: 1 << 22, maxRecordBytes: 1 << 16 },
    });
    const sampler = recordingHeartbeat();
    const config = ConfigSchema.parse({ broker: { url: 'mqtt://127.0.0.1:1', allowPlaintext: true }, k3s: { enabled: false }, stateDir: dir });
    const { telemetry } = buildTelemetryPart(config.telemetry, {
      device: { deviceId: 'dev-1', labels: {}, groups: [] },
      stateDir: dir,
      topics: new Topics('fleetlet/v1'),
      outbox,
      providers: {},
      logger: createLogger({ level: 'silent' }),
      fleetletVersion: 'test',
      progress: sampler,
    });
    telemetry.tick();
    telemetry.tick();
    expect(sampler.beats).toHaveLength(2);
    // A database that no longer answers: the sample cannot be queued, so the loop is not making progress.
    db.close();
    expect(telemetry.tick()).toBeUndefined();
    expect(sampler.beats).toHaveLength(2);
  });

  it('the link beats at every attempt while the broker is down', async () => {
    const link = recordingHeartbeat();
    // Backoff from 100 ms, capped at 1 s.
    const made = makeLink(brokerConfig(`mqtt://127.0.0.1:${await freePort()}`), { progress: link });
    made.link.start();
    onTestFinished(() => made.link.stop());
    await waitFor(() => link.beats.length >= 8, 'beats from repeated attempts', 15_000);
    const gaps = link.beats.slice(1).map((at, i) => at - link.beats[i]!);
    // Each attempt and each refusal beats; the backoff cap bounds every silence.
    expect(Math.max(...gaps)).toBeLessThan(1000 + 500);
  });

  it.skipIf(!mosquittoAvailable())('the link beats on the broker packets of an idle connection (keepalive answers)', { timeout: 30_000 }, async () => {
    const broker: TestBroker = await startMosquitto();
    onTestFinished(() => broker.close());
    const link = recordingHeartbeat();
    const made = makeLink(brokerConfig(broker.url, { keepaliveSeconds: 5 }), { progress: link });
    made.link.start();
    onTestFinished(() => made.link.stop());
    await announced(made);
    const connectedAt = Date.now();
    // No attempts and no traffic of ours: only the broker's PINGRESP can beat after the keepalive.
    await waitFor(() => link.beats.some((at) => at > connectedAt + 4000), 'a beat from a keepalive answer', 12_000);
    expect(made.link.state()).toMatchObject({ connected: true, reconnectAttempts: 0 });
  });
});
