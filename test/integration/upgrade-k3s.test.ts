import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { binaryVersion } from '../../src/k3s/control.js';
import { openDatabase } from '../../src/store/db.js';
import { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { freeFixedPort } from '../helpers/ports.js';
import { outermostProcessesMatching, processesMatching, signalIfAlive } from '../helpers/processes.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { bundleFixture } from '../helpers/bundle-fixture.js';
import { fakeK3sRelease } from '../helpers/fake-k3s.js';
import { isAlive } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { sha256, startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';

/**
 * The k3s.upgrade state machine in a child process, as the agent runs it: the real router, journal and outbox, the
 * real supervisor running the installed (fake) k3s, the real installer downloading from a local release server.
 * Only k3s is a stand-in; what runs afterwards is read from the processes and the binary on disk.
 */
const RUNNER = join(REPO_ROOT, 'dist/command-upgrade-runner.cjs');
const OLD = 'v1.35.2+k3s1';
const GOOD = 'v1.36.3+k3s1';
const BROKEN = 'v1.36.4+k3s1';
const operator = testKey('ops');
const roomy = { maxRows: 100_000, maxBytes: 1 << 28 };

interface Device {
  dir: string;
  binaryPath: string;
  healthzPort: number;
  cleanup: () => void;
}

interface RunOutcome {
  signal: NodeJS.Signals | null;
  code: number | null;
  states: string[];
  stderr: string;
}

let releases: ReleaseServer;

async function device(): Promise<Device> {
  const { dir, cleanup } = tempDir('fleetlet-upgrade-');
  const binaryPath = join(dir, 'k3s', 'bin', 'k3s');
  mkdirSync(join(dir, 'k3s', 'bin'), { recursive: true });
  writeFileSync(binaryPath, fakeK3sRelease(OLD));
  chmodSync(binaryPath, 0o755);
  const d = { dir, binaryPath, healthzPort: await freeFixedPort(), cleanup };
  // A run without a command starts k3s and leaves it running, as the agent's first start does.
  const boot = await runDevice(d, {});
  expect(boot.code, boot.stderr).toBe(0);
  await waitHealthz(d);
  return d;
}

function runDevice(d: Device, options: { command?: unknown; killAt?: string; healthTimeoutMs?: number; free?: number }): Promise<RunOutcome> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    RUN_DIR: d.dir,
    RUN_BINARY: d.binaryPath,
    RUN_HEALTHZ_PORT: String(d.healthzPort),
    RUN_ARTIFACT_URL: releases.artifactUrl,
    RUN_CHANNEL_URL: releases.channelUrl,
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
    const child = spawn(process.execPath, [RUNNER], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, states: [...out.matchAll(/^STATE (\S+)$/gm)].map((m) => m[1]!) });
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

async function healthz(d: Device): Promise<number> {
  try {
    return (await fetch(`http://127.0.0.1:${d.healthzPort}/healthz`, { signal: AbortSignal.timeout(2_000) })).status;
  } catch {
    return 0;
  }
}

async function waitHealthz(d: Device): Promise<void> {
  await waitFor(async () => (await healthz(d)) === 200, 'k3s to answer healthz', 30_000);
}

/** The k3s the supervisor runs now: its recorded pid, alive, and the version it reported when it started. */
function runningK3s(d: Device): { pid: number | undefined; version: string | undefined } {
  const record = join(d.dir, 'work', 'agent-process.json');
  if (!existsSync(record)) return { pid: undefined, version: undefined };
  const { pid } = JSON.parse(readFileSync(record, 'utf8')) as { pid: number };
  if (!isAlive(pid)) return { pid: undefined, version: undefined };
  const log = readFileSync(join(d.dir, 'work', 'agent-output.log'), 'utf8');
  const starts = [...log.matchAll(/msg="Starting k3s agent (v\S+) /g)];
  return { pid, version: starts.at(-1)?.[1] };
}

/** Stops the k3s the runs left running: one SIGTERM, as fleetlet would. */
async function stopK3s(d: Device): Promise<void> {
  const pids = processesMatching(d.binaryPath);
  for (const pid of pids) signalIfAlive(pid, 'SIGTERM');
  await waitFor(() => !pids.some(isAlive), 'k3s to stop', 10_000).catch(() => pids.forEach((pid) => signalIfAlive(pid, 'SIGKILL')));
}

const finals = (list: CommandResult[]) => list.filter((r) => r.status === 'succeeded' || r.status === 'failed');
const upgradeTo = (version: string, args: Record<string, unknown> = {}) =>
  signedCommand(operator, { type: 'k3s.upgrade', args: { version, ...args } });

describe('k3s upgrade state machine', () => {
  let current: Device | undefined;
  beforeAll(async () => {
    await bundleFixture('command-upgrade-runner.ts', RUNNER);
    releases = await startReleaseServer();
    releases.publish(GOOD, { k3s: fakeK3sRelease(GOOD) });
    releases.publish(BROKEN, { k3s: fakeK3sRelease(BROKEN, 'never-healthy') });
  });
  afterEach(async () => {
    if (current) await stopK3s(current);
    current?.cleanup();
    current = undefined;
  });
  afterAll(async () => {
    await releases.close();
  });

  it('upgrades to a healthy version: keeps the previous binary, restarts, commits', async () => {
    const d = (current = await device());
    const run = await runDevice(d, { command: upgradeTo(GOOD), healthTimeoutMs: 15_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(run.states).toEqual(['check', 'download', 'swap', 'restart', 'wait_health', 'commit', 'done']);
    expect(finals(results(d))).toMatchObject([{ status: 'succeeded', detail: `k3s ${OLD} -> ${GOOD}, healthy` }]);
    expect(await binaryVersion(d.binaryPath)).toBe(GOOD);
    expect(sha256(readFileSync(d.binaryPath))).toBe(sha256(fakeK3sRelease(GOOD)));
    expect(await binaryVersion(`${d.binaryPath}.previous`)).toBe(OLD);
    expect(runningK3s(d).version).toBe(GOOD);
    expect(await healthz(d)).toBe(200);
  }, 90_000);

  it('rolls back a version that never becomes healthy and reports why', async () => {
    const d = (current = await device());
    const run = await runDevice(d, { command: upgradeTo(BROKEN) });
    expect(run.code, run.stderr).toBe(0);
    expect(run.states).toEqual(['check', 'download', 'swap', 'restart', 'wait_health', 'rollback', 'rollback_restart', 'rollback_wait_health', 'done']);
    const [final] = finals(results(d));
    expect(final).toMatchObject({ status: 'failed', reason: 'rolled_back' });
    expect(final?.status === 'failed' && final.detail).toContain(`${OLD} restored and healthy`);
    expect(await binaryVersion(d.binaryPath)).toBe(OLD);
    expect(runningK3s(d).version).toBe(OLD);
    expect(await healthz(d)).toBe(200);
  }, 90_000);

  it('refuses a downgrade, a corrupt download and a full disk without touching the running k3s', async () => {
    const d = (current = await device());
    const { pid } = runningK3s(d);
    expect(pid).toBeDefined();
    await runDevice(d, { command: upgradeTo('v1.34.0+k3s1') });
    await runDevice(d, { command: upgradeTo(GOOD, { artifactUrl: `${releases.artifactUrl}/${encodeURIComponent(GOOD)}/k3s`, sha256: 'a'.repeat(64) }) });
    await runDevice(d, { command: upgradeTo(GOOD), free: 1000 });
    expect(finals(results(d)).map((r) => r.status === 'failed' && r.reason)).toEqual(['downgrade_refused', 'download_failed', 'disk_space']);
    expect(runningK3s(d).pid).toBe(pid);
    expect(await binaryVersion(d.binaryPath)).toBe(OLD);
  }, 90_000);

  const happyStates = ['check', 'download', 'swap', 'restart', 'wait_health', 'commit', 'done'];
  it.each(happyStates)('SIGKILL as %s begins: the next start finishes the upgrade and reports it once', async (killAt) => {
    const d = (current = await device());
    const command = upgradeTo(GOOD);
    const first = await runDevice(d, { command, killAt, healthTimeoutMs: 15_000 });
    expect(first.signal).toBe('SIGKILL');
    expect(first.states.at(-1)).toBe(killAt);
    const second = await runDevice(d, { healthTimeoutMs: 15_000 });
    expect(second.code, second.stderr).toBe(0);
    const all = results(d);
    expect(finals(all)).toMatchObject([{ commandId: command.id, status: 'succeeded' }]);
    expect(all.filter((r) => r.status === 'accepted')).toHaveLength(1);
    expect(await binaryVersion(d.binaryPath)).toBe(GOOD);
    // A kill after the commit (at done) leaves the new k3s running; the supervisor adopted it.
    expect(runningK3s(d).version).toBe(GOOD);
    expect(await healthz(d)).toBe(200);
    expect(outermostProcessesMatching(d.binaryPath)).toEqual([runningK3s(d).pid]);
  }, 90_000);

  const rollbackStates = ['wait_health', 'rollback', 'rollback_restart', 'rollback_wait_health', 'done'];
  it.each(rollbackStates)('SIGKILL as %s begins on a bad version: the next start rolls back and reports it once', async (killAt) => {
    const d = (current = await device());
    const command = upgradeTo(BROKEN);
    // wait_health is entered once on the way up; kill at the rollback's own states on their first entry.
    const first = await runDevice(d, { command, killAt });
    expect(first.signal).toBe('SIGKILL');
    const second = await runDevice(d, {});
    expect(second.code, second.stderr).toBe(0);
    expect(finals(results(d))).toMatchObject([{ commandId: command.id, status: 'failed', reason: 'rolled_back' }]);
    expect(await binaryVersion(d.binaryPath)).toBe(OLD);
    expect(runningK3s(d).version).toBe(OLD);
    expect(await healthz(d)).toBe(200);
    expect(outermostProcessesMatching(d.binaryPath)).toEqual([runningK3s(d).pid]);
  }, 90_000);
});
