import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { pino } from 'pino';
import { InventorySchema, type Inventory } from '../../src/protocol/inventory.js';
import { StatusSchema } from '../../src/protocol/status.js';
import { Topics } from '../../src/protocol/topics.js';
import { openDatabase } from '../../src/store/db.js';
import { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import { ConditionDetector } from '../../src/telemetry/condition-detector.js';
import { EventGate } from '../../src/telemetry/event-gate.js';
import { DEFAULT_PROVIDERS, type TelemetryProviders } from '../../src/telemetry/providers.js';
import { Sampler } from '../../src/telemetry/sampler.js';
import { INVENTORY_KEY, readSnapshot, SnapshotStore, STATUS_KEY } from '../../src/telemetry/snapshot-store.js';
import { fileSystemFacts, parseOsRelease, type SystemFactsSource } from '../../src/telemetry/system-facts.js';
import { SystemFiles } from '../../src/telemetry/system-files.js';
import { STATUS_SOCKET_FILE } from '../../src/telemetry/status-socket.js';
import { Telemetry } from '../../src/telemetry/telemetry-part.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';
import { freePort } from '../helpers/ports.js';

const PI_ROOT = join(REPO_ROOT, 'test/fixtures/proc/raspberry-pi-3-armv7');
const LIMITS = {
  budgets: {
    status: { maxRows: 1000, maxBytes: 1 << 20 },
    event: { maxRows: 1000, maxBytes: 1 << 20 },
    result: { maxRows: 1000, maxBytes: 1 << 20 },
  },
  maxTotalBytes: 4 << 20,
  maxRecordBytes: 256 * 1024,
};
interface Harness {
  telemetry: Telemetry;
  outbox: SqliteOutbox;
  clock: { ms: number };
  db: ReturnType<typeof openDatabase>['db'];
  base: () => string;
  socket: string;
}

const FINGERPRINT = 'sha256:5eed5eed5eed5eed';
const PI_SERIAL = '00000000a1b2c3d4';

/** A GET over the status socket: status code and body. */
function getSocket(socketPath: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function harness(
  options: { port?: number; facts?: SystemFactsSource; factsTimeoutMs?: number; providers?: Partial<TelemetryProviders>; dir?: string } = {},
): Promise<Harness> {
  const temp = options.dir ? { dir: options.dir, cleanup: () => {} } : tempDir('fleetlet-telemetry-');
  const { dir, cleanup } = temp;
  const { db } = openDatabase({ stateDir: join(dir, 'state'), fleetletVersion: '0.1.0' });
  const socket = join(dir, 'state', STATUS_SOCKET_FILE);
  onTestFinished(cleanup);
  onTestFinished(() => void db.close());
  const logger = pino({ level: 'silent' });
  const outbox = new SqliteOutbox(db, { limits: LIMITS });
  const clock = { ms: 1_000 };
  const topics = new Topics('fleetlet/v1');
  const files = new SystemFiles(PI_ROOT);
  const telemetry = new Telemetry({
    intervalMs: 30_000,
    sampler: new Sampler({ files, disks: [{ name: 'state', path: dir }], diskSpace: () => ({ totalBytes: 100, freeBytes: 5 }) }),
    detector: new ConditionDetector(),
    events: new EventGate({ outbox, topic: topics.device('pi-3', 'events'), logger }),
    outbox,
    statusTopic: topics.device('pi-3', 'status'),
    providers: { ...DEFAULT_PROVIDERS, identityFingerprints: () => ({ nodePassword: FINGERPRINT }), ...options.providers },
    device: { deviceId: 'pi-3', labels: { site: 'lab' }, groups: [], fleetletVersion: '0.1.0' },
    files,
    facts: options.facts ?? (async () => ({ distro: 'Raspbian GNU/Linux', release: '11', kernel: '6.1.21-v7+' })),
    snapshots: new SnapshotStore(db),
    http: { port: options.port ?? (await freePort()) },
    statusSocket: { path: socket },
    logger,
    monotonicMs: () => clock.ms,
    factsTimeoutMs: options.factsTimeoutMs,
  });
  await telemetry.start();
  onTestFinished(() => telemetry.stop());
  return { telemetry, outbox, clock, db, base: () => `http://127.0.0.1:${telemetry.httpPort}`, socket };
}

async function inventoryOf(telemetry: Telemetry): Promise<Inventory> {
  await waitFor(() => telemetry.inventory() !== undefined, 'the first inventory', 5_000);
  return telemetry.inventory()!;
}

describe('telemetry part with its local endpoint', () => {
  it('queues a status at start, and raises disk.low and the firmware conditions as events', async () => {
    const { outbox } = await harness();
    const queued = outbox.pending(0, 100);
    const status = queued.filter((r) => r.topic.endsWith('/status')).map((r) => StatusSchema.parse(JSON.parse(r.body)));
    expect(status).toHaveLength(1);
    expect(status[0]).toMatchObject({ seq: 1, temperatureC: 51.5, throttle: { bits: 0x50005 }, link: { connected: false } });
    const kinds = queued.filter((r) => r.topic.endsWith('/events')).map((r) => JSON.parse(r.body).kind);
    expect(kinds.sort()).toEqual(['disk.low', 'power.throttled', 'power.under-voltage']);
  });

  it('answers /healthz with 200 while the link is down, and 503 once sampling has stalled', async () => {
    const { base, clock, telemetry } = await harness();
    const ok = await fetch(`${base()}/healthz`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ status: 'ok', linkConnected: false, consecutiveFailures: 0 });
    clock.ms += 91_000;
    const stale = await fetch(`${base()}/healthz`);
    expect(stale.status).toBe(503);
    expect(await stale.json()).toMatchObject({ status: 'unhealthy', lastSampleSecondsAgo: 91 });
    telemetry.tick();
    expect((await fetch(`${base()}/healthz`)).status).toBe(200);
  });

  it('reports unhealthy after repeated failing samples, with the reason', async () => {
    let broken = false;
    const { base, telemetry } = await harness({
      providers: { outboxStats: () => { if (broken) throw new Error('database is locked'); return DEFAULT_PROVIDERS.outboxStats(); } },
    });
    broken = true;
    for (let i = 0; i < 5; i += 1) expect(telemetry.tick()).toBeUndefined();
    const response = await fetch(`${base()}/healthz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ consecutiveFailures: 5, lastError: 'database is locked' });
  });

  it('serves /metrics in the Prometheus text format', async () => {
    const { base } = await harness();
    const response = await fetch(`${base()}/metrics`);
    expect(response.headers.get('content-type')).toContain('text/plain; version=0.0.4');
    const text = await response.text();
    const families = new Set<string>();
    for (const line of text.trimEnd().split('\n')) {
      if (line.startsWith('# HELP ')) continue;
      const type = /^# TYPE (\w+) (gauge|counter)$/.exec(line);
      if (type) {
        expect(families.has(type[1]!)).toBe(false);
        families.add(type[1]!);
        continue;
      }
      const sample = /^(\w+)(\{[a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*\})? (-?[\d.e+]+)$/.exec(line);
      expect(sample, line).not.toBeNull();
      expect(families.has(sample![1]!), `${sample![1]} has a TYPE line before it`).toBe(true);
    }
    expect(text).toContain('fleetlet_temperature_celsius 51.5\n');
    expect(text).toContain('fleetlet_throttle_active{flag="under-voltage"} 1\n');
    expect(text).toContain('fleetlet_link_connected 0\n');
    expect(text).toContain('fleetlet_events_total{outcome="sent"} 3\n');
    expect(text).toContain('fleetlet_filesystem_free_bytes{dir="state"} 5\n');
  });

  it('serves /status on the unix socket only, mode 0600, and refuses other methods and paths', async () => {
    const { base, telemetry, socket } = await harness();
    await inventoryOf(telemetry);
    const info = lstatSync(socket);
    expect(info.isSocket()).toBe(true);
    expect(info.mode & 0o777).toBe(0o600);
    expect(info.uid).toBe(process.getuid!());
    const answer = await getSocket(socket, '/status');
    expect(answer.status).toBe(200);
    const body = JSON.parse(answer.body) as { pid: number; status: unknown; inventory: unknown };
    expect(body.pid).toBe(process.pid);
    expect(StatusSchema.parse(body.status).seq).toBe(1);
    const inventory = InventorySchema.parse(body.inventory);
    expect(inventory.hardware).toMatchObject({ model: 'Raspberry Pi 3 Model B Rev 1.2', serial: PI_SERIAL });
    expect(inventory.identity).toEqual({ nodePassword: FINGERPRINT });
    expect((await getSocket(socket, '/metrics')).status).toBe(404);
    expect((await fetch(`${base()}/status`)).status).toBe(404);
    expect((await fetch(`${base()}/metrics`, { method: 'POST', body: 'x' })).status).toBe(405);
    expect((await fetch(`${base()}/../etc/passwd`)).status).toBe(404);
    const headers = { 'x-big': 'a'.repeat(20_000) };
    expect((await fetch(`${base()}/healthz`, { headers })).status).toBe(431);
    await telemetry.stop();
    expect(lstatSync(socket, { throwIfNoEntry: false })).toBeUndefined();
  });

  it('hands nothing that identifies the device to whatever reaches 127.0.0.1', async () => {
    const { base, telemetry } = await harness();
    await inventoryOf(telemetry);
    for (const path of ['/healthz', '/metrics', '/status', '/']) {
      const body = await (await fetch(`${base()}${path}`)).text();
      expect(body, path).not.toContain(PI_SERIAL);
      expect(body, path).not.toContain(FINGERPRINT);
      expect(body, path).not.toContain('pi-3');
    }
  });

  it('lets no other user connect to the status socket', async (context) => {
    if (process.getuid!() !== 0 || spawnSync('runuser', ['-u', 'nobody', '--', 'true']).status !== 0) {
      context.skip('needs root and runuser to try as nobody');
    }
    // Directories nobody may traverse (0711) but not list or write: only the socket's own mode stands in the way.
    const { dir, cleanup } = tempDir('fleetlet-telemetry-');
    onTestFinished(cleanup);
    chmodSync(dir, 0o711);
    mkdirSync(join(dir, 'state'), { mode: 0o711 });
    const { socket } = await harness({ dir });
    expect(lstatSync(join(dir, 'state')).mode & 0o777).toBe(0o711);
    const probe = `require('http').get({ socketPath: ${JSON.stringify(socket)}, path: '/status' }, (r) => console.log('status', r.statusCode)).on('error', (e) => console.log(e.code))`;
    // Asynchronously: the socket is served by this very process, which must stay free to answer.
    const run = (command: string, args: string[]) =>
      new Promise<string>((resolve) => execFile(command, args, { timeout: 20_000 }, (_err, stdout) => resolve(stdout.trim())));
    expect(await run('runuser', ['-u', 'nobody', '--', process.execPath, '-e', probe])).toBe('EACCES');
    expect(await run(process.execPath, ['-e', probe])).toBe('status 200');
  });

  it('replaces a stale socket, and serves none in a directory others may write to', async () => {
    const { dir, cleanup } = tempDir('fleetlet-telemetry-');
    onTestFinished(cleanup);
    const state = join(dir, 'state');
    mkdirSync(state, { mode: 0o700 });
    // A killed agent leaves its socket file behind (a clean stop removes it).
    const listener = `require('net').createServer().listen(${JSON.stringify(join(state, STATUS_SOCKET_FILE))}, () => process.kill(process.pid, 'SIGKILL'))`;
    spawnSync(process.execPath, ['-e', listener]);
    expect(lstatSync(join(state, STATUS_SOCKET_FILE)).isSocket()).toBe(true);
    const { telemetry, socket } = await harness({ dir });
    expect(telemetry.statusSocketListening).toBe(true);
    expect((await getSocket(socket, '/status')).status).toBe(200);
    await telemetry.stop();

    chmodSync(state, 0o777);
    const loose = await harness({ dir });
    expect(loose.telemetry.statusSocketListening).toBe(false);
    expect(lstatSync(loose.socket, { throwIfNoEntry: false })).toBeUndefined();
  });

  it('keeps running without the endpoint when its port is taken', async () => {
    const port = await freePort();
    const squatter = createServer().listen(port, '127.0.0.1');
    await new Promise((r) => squatter.once('listening', r));
    onTestFinished(() => new Promise<void>((r) => squatter.close(() => r())));
    const { telemetry, outbox } = await harness({ port });
    expect(telemetry.httpPort).toBeUndefined();
    expect(outbox.pending(0, 10).length).toBeGreaterThan(0);
  });

  it('keeps the latest status and inventory in the database, and reports inventory changes once', async () => {
    let k3sVersion = 'v1.35.1+k3s1';
    const { telemetry, db } = await harness({ providers: { k3sState: () => ({ state: 'running', healthy: true, version: k3sVersion }) } });
    const first = await inventoryOf(telemetry);
    expect(first.k3sVersion).toBe('v1.35.1+k3s1');
    const changes: Inventory[] = [];
    telemetry.onInventoryChange((inventory) => changes.push(inventory));
    telemetry.tick();
    expect(changes).toEqual([]);
    k3sVersion = 'v1.36.3+k3s1';
    telemetry.tick();
    telemetry.tick();
    expect(changes.map((c) => c.k3sVersion)).toEqual(['v1.36.3+k3s1']);
    expect((readSnapshot(db, INVENTORY_KEY)?.value as Inventory).k3sVersion).toBe('v1.36.3+k3s1');
    expect(StatusSchema.parse(readSnapshot(db, STATUS_KEY)?.value).seq).toBe(4);
  });

  it('falls back to /proc for the inventory when the system facts fail or hang', async () => {
    const { telemetry } = await harness({ facts: () => Promise.reject(new Error('boom')) });
    const inventory = await inventoryOf(telemetry);
    expect(inventory.hardware.serial).toBe('00000000a1b2c3d4');
    expect(inventory.os.distro).toBe('Linux');
    const hung = await harness({ facts: () => new Promise(() => {}), factsTimeoutMs: 50 });
    expect((await inventoryOf(hung.telemetry)).hardware.model).toBe('Raspberry Pi 3 Model B Rev 1.2');
  });

  it('reads the distribution of this machine from its os-release, as the agent does', async () => {
    const osRelease = parseOsRelease(new SystemFiles('/').read('etc/os-release') ?? new SystemFiles('/').read('usr/lib/os-release'));
    const facts = await fileSystemFacts(new SystemFiles('/'))();
    expect(facts.distro).toBe(osRelease.get('NAME'));
    expect(facts.distro).toMatch(/\w/);
  });
});
