import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/store/db.js';
import { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { freePort } from '../helpers/ports.js';
import { processesMatching } from '../helpers/processes.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { bundleFixture } from '../helpers/bundle-fixture.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { writeFakeK3s, type FakeK3sBehaviour } from '../fixtures/command-fake-k3s.js';
import { ProcessK3sControl } from '../fixtures/command-k3s-control.js';

const RUNNER = join(REPO_ROOT, 'dist/command-upgrade-runner.cjs');
const OLD = 'v1.35.2+k3s1';
const GOOD = 'v1.36.3+k3s1';
const BROKEN = 'v1.36.4+k3s1';
const operator = testKey('ops');
const roomy = { maxRows: 100_000, maxBytes: 1 << 28 };

interface Device {
  dir: string;
  k3s: ProcessK3sControl;
  port: number;
  cleanup: () => void;
}

async function device(options: { free?: number } = {}): Promise<Device> {
  const { dir, cleanup } = tempDir('fleetlet-upgrade-');
  const mirror = join(dir, 'mirror');
  const releases: [string, FakeK3sBehaviour][] = [[OLD, 'healthy'], [GOOD, 'healthy'], [BROKEN, 'never-healthy']];
  for (const [version, behaviour] of releases) {
    mkdirSync(join(mirror, version), { recursive: true });
    const bytes = writeFakeK3s(join(mirror, version, 'k3s'), version, behaviour);
    writeFileSync(join(mirror, version, 'sha256'), createHash('sha256').update(bytes).digest('hex'));
  }
  mkdirSync(join(dir, 'k3s', 'bin'), { recursive: true });
  writeFakeK3s(join(dir, 'k3s', 'bin', 'k3s'), OLD, 'healthy');
  const port = await freePort();
  const k3s = new ProcessK3sControl(join(dir, 'k3s'), mirror, port, options.free);
  await k3s.restart();
  expect(await k3s.waitHealthy(10_000, new AbortController().signal)).toEqual({ healthy: true });
  return { dir, k3s, port, cleanup };
}

interface RunOutcome {
  signal: NodeJS.Signals | null;
  code: number | null;
  states: string[];
}

function runDevice(d: Device, options: { command?: unknown; killAt?: string; healthTimeoutMs?: number; free?: number }): Promise<RunOutcome> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    RUN_STATE_DIR: join(d.dir, 'state'),
    RUN_K3S_DIR: join(d.dir, 'k3s'),
    RUN_MIRROR: join(d.dir, 'mirror'),
    RUN_HEALTHZ_PORT: String(d.port),
    RUN_OPERATOR_PUB: operator.publicBase64,
    // Long enough for a loaded machine to start a healthy fake; a broken one costs this much per wait.
    RUN_HEALTH_TIMEOUT_MS: String(options.healthTimeoutMs ?? 4000),
    RUN_KILL_AT: options.killAt ?? '',
  };
  if (options.free !== undefined) env.RUN_FREE_BYTES = String(options.free);
  if (options.command) {
    env.RUN_COMMAND_FILE = join(d.dir, 'command.json');
    writeFileSync(env.RUN_COMMAND_FILE, encode(options.command));
  }
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RUNNER], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, states: [...out.matchAll(/^STATE (\S+)$/gm)].map((m) => m[1]!) });
    });
  });
}

function results(d: Device): CommandResult[] {
  const { db } = openDatabase({ stateDir: join(d.dir, 'state'), fleetletVersion: 'upgrade-test' });
  try {
    const outbox = new SqliteOutbox(db, { limits: { budgets: { status: roomy, event: roomy, result: roomy }, maxTotalBytes: 1 << 29, maxRecordBytes: 1 << 16 } });
    return outbox.pending(0, 100_000).filter((r) => r.class === 'result').map((r) => JSON.parse(r.body) as CommandResult);
  } finally {
    db.close();
  }
}

const finals = (list: CommandResult[]) => list.filter((r) => r.status === 'succeeded' || r.status === 'failed');
const upgradeTo = (version: string, args: Record<string, unknown> = {}) =>
  signedCommand(operator, { type: 'k3s.upgrade', args: { version, ...args } });

describe('k3s upgrade state machine', () => {
  let current: Device | undefined;
  beforeAll(async () => {
    await bundleFixture('command-upgrade-runner.ts', RUNNER);
  });
  afterEach(() => {
    current?.k3s.stop();
    current?.cleanup();
    current = undefined;
  });
  afterAll(() => current?.k3s.stop());

  it('upgrades to a healthy version: keeps the previous binary, restarts, commits', async () => {
    const d = (current = await device());
    const run = await runDevice(d, { command: upgradeTo(GOOD), healthTimeoutMs: 15_000 });
    expect(run.code).toBe(0);
    expect(run.states).toEqual(['check', 'download', 'swap', 'restart', 'wait_health', 'commit', 'done']);
    expect(finals(results(d))).toMatchObject([{ status: 'succeeded', detail: `k3s ${OLD} -> ${GOOD}, healthy` }]);
    expect(await d.k3s.installedVersion()).toBe(GOOD);
    expect(execFileSync(`${d.k3s.binaryPath}.previous`, ['--version'], { encoding: 'utf8' })).toContain(OLD);
    expect(await d.k3s.waitHealthy(5000, new AbortController().signal)).toEqual({ healthy: true });
  }, 90_000);

  it('rolls back a version that never becomes healthy and reports why', async () => {
    const d = (current = await device());
    const run = await runDevice(d, { command: upgradeTo(BROKEN) });
    expect(run.code).toBe(0);
    expect(run.states).toEqual(['check', 'download', 'swap', 'restart', 'wait_health', 'rollback', 'rollback_restart', 'rollback_wait_health', 'done']);
    const [final] = finals(results(d));
    expect(final).toMatchObject({ status: 'failed', reason: 'rolled_back' });
    expect(final?.status === 'failed' && final.detail).toContain(`${OLD} restored and healthy`);
    expect(await d.k3s.installedVersion()).toBe(OLD);
    expect(await d.k3s.waitHealthy(5000, new AbortController().signal)).toEqual({ healthy: true });
  }, 90_000);

  it('refuses a downgrade, a corrupt download and a full disk without touching the running k3s', async () => {
    const d = (current = await device());
    const pid = d.k3s.runningPid();
    await runDevice(d, { command: upgradeTo('v1.34.0+k3s1') });
    await runDevice(d, { command: upgradeTo(GOOD, { artifactUrl: 'https://mirror.example/k3s', sha256: 'a'.repeat(64) }) });
    await runDevice(d, { command: upgradeTo(GOOD), free: 1000 });
    expect(finals(results(d)).map((r) => r.status === 'failed' && r.reason)).toEqual(['downgrade_refused', 'download_failed', 'disk_space']);
    expect(d.k3s.runningPid()).toBe(pid);
    expect(await d.k3s.installedVersion()).toBe(OLD);
  }, 90_000);

  const happyStates = ['check', 'download', 'swap', 'restart', 'wait_health', 'commit', 'done'];
  it.each(happyStates)('SIGKILL as %s begins: the next start finishes the upgrade and reports it once', async (killAt) => {
    const d = (current = await device());
    const command = upgradeTo(GOOD);
    const first = await runDevice(d, { command, killAt, healthTimeoutMs: 15_000 });
    expect(first.signal).toBe('SIGKILL');
    expect(first.states.at(-1)).toBe(killAt);
    const second = await runDevice(d, { healthTimeoutMs: 15_000 });
    expect(second.code).toBe(0);
    const all = results(d);
    expect(finals(all)).toMatchObject([{ commandId: command.id, status: 'succeeded' }]);
    expect(all.filter((r) => r.status === 'accepted')).toHaveLength(1);
    expect(await d.k3s.installedVersion()).toBe(GOOD);
    expect(await d.k3s.waitHealthy(5000, new AbortController().signal)).toEqual({ healthy: true });
    expect(processesMatching(d.k3s.binaryPath)).toEqual([d.k3s.runningPid()]);
  }, 90_000);

  const rollbackStates = ['wait_health', 'rollback', 'rollback_restart', 'rollback_wait_health', 'done'];
  it.each(rollbackStates)('SIGKILL as %s begins on a bad version: the next start rolls back and reports it once', async (killAt) => {
    const d = (current = await device());
    const command = upgradeTo(BROKEN);
    // wait_health is entered once on the way up; kill at the rollback's own states on their first entry.
    const first = await runDevice(d, { command, killAt });
    expect(first.signal).toBe('SIGKILL');
    const second = await runDevice(d, {});
    expect(second.code).toBe(0);
    expect(finals(results(d))).toMatchObject([{ commandId: command.id, status: 'failed', reason: 'rolled_back' }]);
    expect(await d.k3s.installedVersion()).toBe(OLD);
    expect(await d.k3s.waitHealthy(5000, new AbortController().signal)).toEqual({ healthy: true });
    expect(processesMatching(d.k3s.binaryPath)).toEqual([d.k3s.runningPid()]);
  }, 90_000);
});
