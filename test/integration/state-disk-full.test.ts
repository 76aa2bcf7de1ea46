import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { mosquittoAvailable, startMosquitto } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { createLogger } from '../../src/lib/logger.js';
import { Topics } from '../../src/protocol/topics.js';
import { openDatabase } from '../../src/store/db.js';
import { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import { buildTelemetryPart } from '../../src/telemetry/create-telemetry.js';

/**
 * A real full file system: a small tmpfs mounted for the test. Mounting needs root (CI runs as root); elsewhere
 * these tests are skipped, saying why.
 */
function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0) return false;
  const { dir, cleanup } = tempDir('fleetlet-mount-probe-');
  try {
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]).status !== 0) return false;
    return spawnSync('umount', [dir]).status === 0;
  } finally {
    cleanup();
  }
}

const MOUNTABLE = canMountTmpfs();
if (!MOUNTABLE) console.warn('state-disk-full tests skipped: mounting a tmpfs needs root (mount -t tmpfs)');

function smallFileSystem(): string {
  const { dir, cleanup } = tempDir('fleetlet-disk-full-');
  const mountPoint = join(dir, 'mnt');
  mkdirSync(mountPoint);
  expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint]).status).toBe(0);
  onTestFinished(cleanup);
  onTestFinished(() => void spawnSync('umount', ['-l', mountPoint]));
  return mountPoint;
}

/** Writes a filler file until not one more byte fits. */
function fill(mountPoint: string): string {
  const filler = join(mountPoint, 'filler');
  const fd = openSync(filler, 'w');
  try {
    for (const size of [64 * 1024, 4096, 1]) {
      const chunk = Buffer.alloc(size, 0x61);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
  return filler;
}

async function notifyReceiver(dir: string): Promise<{ socket: string; received: () => string }> {
  const socket = join(dir, 'notify.sock');
  const receiver: ChildProcess = spawn('python3', [join(REPO_ROOT, 'test/fixtures/notify-receiver.py'), socket]);
  let received = '';
  receiver.stdout!.on('data', (chunk: Buffer) => (received += chunk.toString()));
  onTestFinished(() => void receiver.kill());
  await waitFor(() => received.includes('listening'), 'the notify socket');
  return { socket, received: () => received };
}

const ROOT = 'fleetlet/v1/devices/test-device';

describe.skipIf(!MOUNTABLE || !mosquittoAvailable())('an agent whose state file system is full', () => {
  // SIGKILL leaves the -shm and -wal files behind: the database then opens, and the first write fails instead.
  it.each(['SIGTERM', 'SIGKILL'] as const)('after a %s: starts degraded on an in-memory copy, reports state.disk-full, keeps its boot sequence, refuses commands, and leaves the file alone', { timeout: 90_000 }, async (stopSignal) => {
    const mountPoint = smallFileSystem();
    const broker = await startMosquitto();
    onTestFinished(() => broker.close());
    const operator = testKey('ops');
    const { dir, cleanup } = tempDir('fleetlet-disk-full-config-');
    onTestFinished(cleanup);
    const config = writeAgentConfig(dir, {
      broker: { url: broker.url },
      stateDir: join(mountPoint, 'state'),
      commands: { trustedKeys: [{ id: operator.id, publicKey: operator.publicBase64 }] },
    });

    // A first run with room writes the state: boot sequence 1.
    const firstSeen = await Observer.connect(broker.url, [`${ROOT}/presence`]);
    onTestFinished(() => firstSeen.close());
    const first = startCli(['agent', '--config', config]);
    await firstSeen.waitFor((m) => (m.json as { state?: string }).state === 'online', 'the first run online');
    first.child.kill(stopSignal);
    await first.exited;

    const filler = fill(mountPoint);
    const observer = await Observer.connect(broker.url, [`${ROOT}/#`]);
    onTestFinished(() => observer.close());
    const { socket, received } = await notifyReceiver(dir);
    const second = startCli(['agent', '--config', config], { NOTIFY_SOCKET: socket, WATCHDOG_USEC: '400000' });
    onTestFinished(() => void second.child.kill('SIGKILL'));

    const event = await observer.waitFor(
      (m) => m.topic === `${ROOT}/events` && (m.json as { kind?: string }).kind === 'state.disk-full',
      'the state.disk-full event at the broker',
    );
    expect(event.json).toMatchObject({ state: 'raised', severity: 'critical', detail: { copiedFromFile: true } });
    const online = await observer.waitFor(
      (m) => m.topic === `${ROOT}/presence` && (m.json as { state?: string }).state === 'online',
      'the online presence',
    );
    // Continued from the file's value on the copy: 2 after the first run's 1.
    expect(online.json).toMatchObject({ bootSequence: 2 });
    await waitFor(() => received().includes('READY=1') && (received().match(/WATCHDOG=1/g) ?? []).length >= 2, 'READY and watchdog pings');
    expect(second.output()).toContain('the file system of the state directory is full');

    const command = signedCommand(operator, { type: 'ping', target: { device: 'test-device' } });
    await observer.client.publishAsync(`${ROOT}/commands`, encode(command), { qos: 1 });
    const result = await observer.waitFor(
      (m) => m.topic === `${ROOT}/results` && (m.json as { commandId?: string }).commandId === command.id,
      'the refusal of the command',
    );
    expect(result.json).toMatchObject({ status: 'rejected', reason: 'disabled' });
    expect(second.child.exitCode).toBeNull();

    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    // Nothing of the degraded run reached the file: the next start with room goes on from the first run's state.
    rmSync(filler);
    const file = new BetterSqlite3(join(mountPoint, 'state', 'fleetlet.db'), { readonly: true });
    try {
      expect(file.prepare("SELECT value FROM kv WHERE key = 'link.bootSequence'").get()).toEqual({ value: '1' });
    } finally {
      file.close();
    }
  });

  it('starts on an empty in-memory state when a fresh device has no room for its database at all', { timeout: 60_000 }, async () => {
    const mountPoint = smallFileSystem();
    const broker = await startMosquitto();
    onTestFinished(() => broker.close());
    const { dir, cleanup } = tempDir('fleetlet-disk-full-config-');
    onTestFinished(cleanup);
    const config = writeAgentConfig(dir, { broker: { url: broker.url }, stateDir: join(mountPoint, 'state') });
    mkdirSync(join(mountPoint, 'state'), { mode: 0o700 });
    fill(mountPoint);
    const observer = await Observer.connect(broker.url, [`${ROOT}/#`]);
    onTestFinished(() => observer.close());
    const agent = startCli(['agent', '--config', config]);
    onTestFinished(() => void agent.child.kill('SIGKILL'));
    const event = await observer.waitFor(
      (m) => m.topic === `${ROOT}/events` && (m.json as { kind?: string }).kind === 'state.disk-full',
      'the state.disk-full event at the broker',
    );
    expect(event.json).toMatchObject({ state: 'raised', detail: { copiedFromFile: false } });
    const online = await observer.waitFor((m) => m.topic === `${ROOT}/presence` && (m.json as { state?: string }).state === 'online', 'online');
    expect(online.json).toMatchObject({ bootSequence: 1 });
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
  });

  it('keeps sampling when the disk fills while it runs: the status snapshot fails, the sample and its heartbeat go on', async () => {
    const mountPoint = smallFileSystem();
    const stateDir = join(mountPoint, 'state');
    const config = ConfigSchema.parse({
      broker: { url: 'mqtt://127.0.0.1:1', allowPlaintext: true },
      k3s: { enabled: false },
      stateDir,
      telemetry: { http: { enabled: false } },
    });
    const { db } = openDatabase({ stateDir, fleetletVersion: 'test' });
    onTestFinished(() => void db.close());
    const roomy = { maxRows: 1_000_000, maxBytes: 1 << 30 };
    const outbox = new SqliteOutbox(db, {
      limits: { budgets: { status: roomy, event: roomy, result: roomy }, maxTotalBytes: 1 << 30, maxRecordBytes: 1 << 16 },
    });
    const beats: number[] = [];
    const { telemetry } = buildTelemetryPart(config.telemetry, {
      device: { deviceId: 'test-device', labels: {}, groups: [] },
      stateDir: config.stateDir,
      topics: new Topics('fleetlet/v1'),
      outbox,
      db,
      providers: {},
      logger: createLogger({ level: 'silent' }),
      fleetletVersion: 'test',
      progress: { beat: () => void beats.push(Date.now()), idle: () => {}, busyFor: () => {} },
    });
    expect(telemetry.tick()).toBeDefined();
    fill(mountPoint);
    const samples = Array.from({ length: 20 }, () => telemetry.tick());
    expect(outbox.stats().diskFull).toBeGreaterThan(0);
    expect(samples.map((sample) => sample?.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
    expect(beats).toHaveLength(21);
  });
});
