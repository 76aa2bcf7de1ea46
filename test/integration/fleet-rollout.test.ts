import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import type { RolloutState } from '../../src/fleet/rollout-state.js';
import { WORK_DIR_NAME } from '../../src/k3s/k3s-part.js';
import { LOG_FILE } from '../../src/k3s/supervisor.js';
import { isolatedK3s } from '../helpers/agent-config.js';
import { waitFor } from '../helpers/wait.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { processesMatching, signalIfAlive } from '../helpers/processes.js';
import { startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { shellK3sWithHealthz } from '../fixtures/command-agent-fake-k3s.js';

const OLD = 'v1.35.2+k3s1';
const GOOD = 'v1.36.3+k3s1';
const DEVICES = Array.from({ length: 20 }, (_, i) => `dev-${String(i + 1).padStart(2, '0')}`);
/** These download from a mirror whose new build never becomes healthy: their upgrades roll back and fail. */
const FAILING = new Set(['dev-07', 'dev-08', 'dev-09']);
/** Generous: CI runs this beside CPU-heavy suites (qemu) on two cores, with twenty agents and their k3s. */
const RUN_TIMEOUT_MS = 150_000;
const TEST_TIMEOUT_MS = 240_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Twenty real `fleetlet agent` processes (the bundle, built by the same composition root as the product), each
 * supervising its own shell k3s, and the operator's `fleetlet fleet rollout` upgrading them over a real broker.
 */
describe('fleet rollout over 20 real agent processes on a real broker', () => {
  let broker: TestBroker;
  let good: ReleaseServer;
  let bad: ReleaseServer;
  let dir: { dir: string; cleanup: () => void };
  let keyFile: string;
  let fleet: Observer;
  const agents: ChildProcess[] = [];
  const output = new Map<string, string>();

  // Each run is cut off well before its test's own timeout, so a slow or stuck run fails with what it printed.
  const fleetlet = (args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(process.execPath, [FLEETLET_BUNDLE, 'fleet', ...args, '--broker', broker.url, '--allow-plaintext', '--key', keyFile], { timeout: RUN_TIMEOUT_MS }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
      );
    });

  beforeAll(async () => {
    broker = await startMosquitto();
    good = await startReleaseServer();
    bad = await startReleaseServer();
    good.publish(GOOD, { k3s: shellK3sWithHealthz(GOOD, 'healthy') });
    bad.publish(GOOD, { k3s: shellK3sWithHealthz(GOOD, 'never-healthy') });
    dir = tempDir('fleetlet-rollout-');
    keyFile = join(dir.dir, 'ops.key');
    const key = generateSigningKey(keyFile, 'ops');
    fleet = await Observer.connect(broker.url, ['fleetlet/v1/devices/+/presence']);
    for (const [index, id] of DEVICES.entries()) {
      const root = join(dir.dir, id);
      const binaryPath = join(root, 'bin', 'k3s');
      mkdirSync(dirname(binaryPath), { recursive: true });
      writeFileSync(binaryPath, shellK3sWithHealthz(OLD, 'healthy'));
      chmodSync(binaryPath, 0o755);
      const mirror = FAILING.has(id) ? bad : good;
      writeFileSync(
        join(root, 'config.yaml'),
        stringify({
          device: { id, labels: { site: index < 10 ? 'a' : 'b' } },
          broker: { url: broker.url, allowPlaintext: true, keepaliveSeconds: 10, reconnect: { baseMs: 200, capMs: 2000 } },
          k3s: await isolatedK3s(root, binaryPath, {
            artifactUrl: mirror.artifactUrl,
            channelUrl: mirror.channelUrl,
            allowInsecureMirror: true,
            nodeName: id,
          }),
          commands: { trustedKeys: [{ id: 'ops', publicKey: key.publicKey }], k3sUpgrade: { healthTimeoutSeconds: 10, minFreeBytes: 1024 } },
          stateDir: join(root, 'state'),
          // Slow telemetry: the rollout needs the inventory, not samples.
          telemetry: { intervalSeconds: 3600, http: { enabled: false } },
          log: { level: 'info' },
        }),
      );
      const child = spawn(process.execPath, [FLEETLET_BUNDLE, 'agent', '--config', join(root, 'config.yaml')], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' },
      });
      output.set(id, '');
      const collect = (chunk: Buffer) => output.set(id, output.get(id)! + chunk.toString());
      child.stdout!.on('data', collect);
      child.stderr!.on('data', collect);
      agents.push(child);
    }
    // One deadline for all twenty: on a loaded two-core machine they come up together, slowly.
    const deadline = Date.now() + 240_000;
    for (const id of DEVICES) {
      await waitFor(() => output.get(id)!.includes('"to":"running-healthy"'), () => `${id} with a healthy k3s: ${output.get(id)!.slice(-600)}`, Math.max(1_000, deadline - Date.now()));
    }
    await waitFor(
      () => new Set(fleet.messages.filter((m) => (m.json as { state?: string }).state === 'online').map((m) => m.topic)).size === 20,
      'all 20 online',
      30_000,
    );
  }, 300_000);

  afterAll(async () => {
    await Promise.all(
      agents.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
    // A stopped agent leaves its k3s running for the next agent to adopt: the test stops those itself.
    if (dir) {
      for (const pid of processesMatching(dir.dir)) signalIfAlive(pid, 'SIGKILL');
      await waitFor(() => processesMatching(dir.dir).length === 0, 'no process left from the devices', 20_000);
    }
    await fleet?.client.endAsync();
    await good?.close();
    await bad?.close();
    await broker?.close();
    dir?.cleanup();
  }, 60_000);

  const version = (id: string) => /k3s version (\S+)/.exec(execFileSync(join(dir.dir, id, 'bin', 'k3s'), ['--version'], { encoding: 'utf8' }))?.[1];
  /** How often the device's supervisor started k3s at version `v`, from k3s's own output. */
  const starts = (id: string, v: string) =>
    readFileSync(join(dir.dir, id, 'state', WORK_DIR_NAME, LOG_FILE), 'utf8').split('\n').filter((l) => l.includes(`Starting k3s agent ${v}`)).length;

  it('a dry run shows the batches from the live fleet and sends nothing', async () => {
    const stateFile = join(dir.dir, 'dry.json');
    const run = await fleetlet(['rollout', 'k3s', '--to', GOOD, '--canary-count', '2', '--batch-size', '25%', '--dry-run', '--state', stateFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('to 20 device(s) in 5 batch(es); nothing sent');
    expect(run.stdout).toContain('  batch 1: dev-01, dev-02\n  batch 2: dev-03, dev-04, dev-05, dev-06, dev-07\n');
    expect(existsSync(stateFile)).toBe(false);
    for (const id of DEVICES) expect(version(id)).toBe(OLD);
  });

  it('upgrades canaries then batches, and halts once failures pass the threshold', async () => {
    const stateFile = join(dir.dir, 'site-a.json');
    const args = ['rollout', 'k3s', '--to', GOOD, '--label', 'site=a', '--canary-count', '2', '--batch-size', '4', '--max-failures', '2', '--device-timeout', '90', '--state', stateFile];
    const run = await fleetlet(args);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stdout).toContain('batch 1/3 (canaries): dev-01, dev-02');
    expect(run.stdout).toMatch(/halted: 3 failure\(s\) after batch 3, more than the 2 allowed/);
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as RolloutState;
    expect(state.batches).toEqual([['dev-01', 'dev-02'], ['dev-03', 'dev-04', 'dev-05', 'dev-06'], ['dev-07', 'dev-08', 'dev-09', 'dev-10']]);
    for (const id of ['dev-01', 'dev-02', 'dev-03', 'dev-04', 'dev-05', 'dev-06', 'dev-10']) {
      expect(state.devices[id]?.status, id).toBe('succeeded');
      expect(version(id), id).toBe(GOOD);
    }
    for (const id of FAILING) {
      expect(state.devices[id]).toMatchObject({ status: 'failed', detail: expect.stringContaining('rolled_back') });
      expect(version(id), id).toBe(OLD);
    }
    // Every agent is still up.
    expect(agents.every((child) => child.exitCode === null)).toBe(true);
    // A halted rollout stays halted when run again: nothing more is sent.
    const again = await fleetlet(args);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain(`resuming rollout ${state.rolloutId}`);
    expect(again.stdout).toContain('halted');
    expect(starts('dev-07', GOOD)).toBe(1);
  }, TEST_TIMEOUT_MS);

  it('halts at the canaries when a canary fails, before any other device is touched', async () => {
    const stateFile = join(dir.dir, 'canary.json');
    const run = await fleetlet(['rollout', 'k3s', '--to', GOOD, '--label', 'site=a', '--canary', 'dev-08', '--batch-size', '50%', '--max-failures', '5', '--device-timeout', '90', '--state', stateFile]);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stdout).toMatch(/halted: 1 failure\(s\) after batch 1, more than the 0 allowed for canaries/);
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as RolloutState;
    expect(Object.entries(state.devices).filter(([, d]) => d.status !== 'pending').map(([id]) => id)).toEqual(['dev-08']);
  }, TEST_TIMEOUT_MS);

  it('resumes after the operator process is killed mid-rollout, upgrading every device exactly once', async () => {
    const stateFile = join(dir.dir, 'site-b.json');
    const args = ['fleet', 'rollout', 'k3s', '--to', GOOD, '--label', 'site=b', '--canary-count', '1', '--batch-size', '3', '--max-failures', '0', '--device-timeout', '90', '--state', stateFile, '--broker', broker.url, '--key', keyFile];
    const first = spawn(process.execPath, [FLEETLET_BUNDLE, ...args, '--allow-plaintext'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    first.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const deadline = Date.now() + 90_000;
    while (!out.includes('after batch 2/') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));
    const midway = JSON.parse(readFileSync(stateFile, 'utf8')) as RolloutState;
    expect(midway.outcome, out).toBe('running');
    const done = Object.values(midway.devices).filter((d) => d.status === 'succeeded').length;
    expect(done, out).toBeGreaterThanOrEqual(4);
    expect(done, out).toBeLessThan(10);

    const second = await fleetlet(args.slice(1, -4));
    expect(second.code, second.stdout + second.stderr).toBe(0);
    expect(second.stdout).toContain(`resuming rollout ${midway.rolloutId}`);
    const final = JSON.parse(readFileSync(stateFile, 'utf8')) as RolloutState;
    expect(final.outcome, second.stdout).toBe('completed');
    for (const id of DEVICES.slice(10)) {
      expect(final.devices[id]?.status, id).toBe('succeeded');
      expect(version(id), id).toBe(GOOD);
      expect(starts(id, GOOD), `${id} started the new version once`).toBe(1);
    }
  }, TEST_TIMEOUT_MS);
});
