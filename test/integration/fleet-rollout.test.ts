import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import type { RolloutState } from '../../src/fleet/rollout-state.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { FLEETLET_BUNDLE, REPO_ROOT, tempDir } from '../helpers/paths.js';
import { bundleFixture } from '../helpers/bundle-fixture.js';
import { writeShellFakeK3s } from '../fixtures/command-fake-k3s.js';
import { ProcessK3sControl } from '../fixtures/command-k3s-control.js';

const DEVICE_BUNDLE = join(REPO_ROOT, 'dist/command-device-process.cjs');
const OLD = 'v1.35.2+k3s1';
const GOOD = 'v1.36.3+k3s1';
const DEVICES = Array.from({ length: 20 }, (_, i) => `dev-${String(i + 1).padStart(2, '0')}`);
/** On these, the new version never becomes healthy: their upgrade rolls back and fails. */
const FAILING = new Set(['dev-07', 'dev-08', 'dev-09']);
/** Generous: CI runs this beside CPU-heavy suites (qemu) on two cores, with twenty device processes. */
const RUN_TIMEOUT_MS = 100_000;
const TEST_TIMEOUT_MS = 240_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe('fleet rollout over 20 device processes on a real broker', () => {
  let broker: TestBroker;
  let dir: { dir: string; cleanup: () => void };
  let keyFile: string;
  const processes: ChildProcess[] = [];
  const k3s = new Map<string, ProcessK3sControl>();

  // Each run is cut off well before its test's own timeout, so a slow or stuck run fails with what it printed.
  const fleetlet = (args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      execFile(process.execPath, [FLEETLET_BUNDLE, 'fleet', ...args, '--broker', broker.url, '--allow-plaintext', '--key', keyFile], { timeout: RUN_TIMEOUT_MS }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
      );
    });

  beforeAll(async () => {
    await bundleFixture('command-device-process.ts', DEVICE_BUNDLE);
    broker = await startMosquitto();
    dir = tempDir('fleetlet-rollout-');
    keyFile = join(dir.dir, 'ops.key');
    const key = generateSigningKey(keyFile, 'ops');
    const ready: Promise<void>[] = [];
    for (const [index, id] of DEVICES.entries()) {
      const root = join(dir.dir, id);
      const mirror = join(root, 'mirror');
      for (const [version, behaviour] of [[OLD, 'healthy'], [GOOD, FAILING.has(id) ? 'never-healthy' : 'healthy']] as const) {
        mkdirSync(join(mirror, version), { recursive: true });
        const bytes = writeShellFakeK3s(join(mirror, version, 'k3s'), version, behaviour);
        writeFileSync(join(mirror, version, 'sha256'), createHash('sha256').update(bytes).digest('hex'));
      }
      mkdirSync(join(root, 'k3s', 'bin'), { recursive: true });
      writeShellFakeK3s(join(root, 'k3s', 'bin', 'k3s'), OLD, 'healthy');
      const control = new ProcessK3sControl(join(root, 'k3s'), mirror, 0);
      await control.restart();
      k3s.set(id, control);
      const child = spawn(process.execPath, [DEVICE_BUNDLE], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: {
          PATH: process.env.PATH ?? '',
          DEV_ID: id,
          DEV_LABELS: JSON.stringify({ site: index < 10 ? 'a' : 'b' }),
          DEV_STATE_DIR: join(root, 'state'),
          DEV_K3S_DIR: join(root, 'k3s'),
          DEV_MIRROR: mirror,
          DEV_OPERATOR_PUB: key.publicKey,
          DEV_BROKER_URL: broker.url,
          DEV_HEALTH_TIMEOUT_MS: '3000',
        },
      });
      processes.push(child);
      ready.push(
        new Promise((resolve, reject) => {
          child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('READY') && resolve());
          child.once('exit', (code) => reject(new Error(`${id} exited with ${code}`)));
        }),
      );
    }
    await Promise.all(ready);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(
      processes.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
    for (const control of k3s.values()) control.stop();
    await broker?.close();
    dir?.cleanup();
  });

  const version = (id: string) => k3s.get(id)!.installedVersion();
  const starts = (id: string, v: string) =>
    readFileSync(join(dir.dir, id, 'k3s', 'k3s.log'), 'utf8').split('\n').filter((l) => l.includes(`Starting k3s agent ${v}`)).length;

  it('a dry run shows the batches from the live fleet and sends nothing', async () => {
    const stateFile = join(dir.dir, 'dry.json');
    const run = await fleetlet(['rollout', 'k3s', '--to', GOOD, '--canary-count', '2', '--batch-size', '25%', '--dry-run', '--state', stateFile]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('to 20 device(s) in 5 batch(es); nothing sent');
    expect(run.stdout).toContain('  batch 1: dev-01, dev-02\n  batch 2: dev-03, dev-04, dev-05, dev-06, dev-07\n');
    expect(existsSync(stateFile)).toBe(false);
    for (const id of DEVICES) expect(await version(id)).toBe(OLD);
  });

  it('upgrades canaries then batches, and halts once failures pass the threshold', async () => {
    const stateFile = join(dir.dir, 'site-a.json');
    const args = ['rollout', 'k3s', '--to', GOOD, '--label', 'site=a', '--canary-count', '2', '--batch-size', '4', '--max-failures', '2', '--device-timeout', '30', '--state', stateFile];
    const run = await fleetlet(args);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(run.stdout).toContain('batch 1/3 (canaries): dev-01, dev-02');
    expect(run.stdout).toMatch(/halted: 3 failure\(s\) after batch 3, more than the 2 allowed/);
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as RolloutState;
    expect(state.batches).toEqual([['dev-01', 'dev-02'], ['dev-03', 'dev-04', 'dev-05', 'dev-06'], ['dev-07', 'dev-08', 'dev-09', 'dev-10']]);
    for (const id of ['dev-01', 'dev-02', 'dev-03', 'dev-04', 'dev-05', 'dev-06', 'dev-10']) {
      expect(state.devices[id]?.status, id).toBe('succeeded');
      expect(await version(id), id).toBe(GOOD);
    }
    for (const id of FAILING) {
      expect(state.devices[id]).toMatchObject({ status: 'failed', detail: expect.stringContaining('rolled_back') });
      expect(await version(id), id).toBe(OLD);
    }
    // A halted rollout stays halted when run again: nothing more is sent.
    const again = await fleetlet(args);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain(`resuming rollout ${state.rolloutId}`);
    expect(again.stdout).toContain('halted');
    expect(starts('dev-07', GOOD)).toBe(1);
  }, TEST_TIMEOUT_MS);

  it('halts at the canaries when a canary fails, before any other device is touched', async () => {
    const stateFile = join(dir.dir, 'canary.json');
    const run = await fleetlet(['rollout', 'k3s', '--to', GOOD, '--label', 'site=a', '--canary', 'dev-08', '--batch-size', '50%', '--max-failures', '5', '--device-timeout', '30', '--state', stateFile]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/halted: 1 failure\(s\) after batch 1, more than the 0 allowed for canaries/);
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as RolloutState;
    expect(Object.entries(state.devices).filter(([, d]) => d.status !== 'pending').map(([id]) => id)).toEqual(['dev-08']);
  }, TEST_TIMEOUT_MS);

  it('resumes after the operator process is killed mid-rollout, upgrading every device exactly once', async () => {
    const stateFile = join(dir.dir, 'site-b.json');
    const args = ['fleet', 'rollout', 'k3s', '--to', GOOD, '--label', 'site=b', '--canary-count', '1', '--batch-size', '3', '--max-failures', '0', '--device-timeout', '30', '--state', stateFile, '--broker', broker.url, '--key', keyFile];
    const first = spawn(process.execPath, [FLEETLET_BUNDLE, ...args, '--allow-plaintext'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    first.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const deadline = Date.now() + 60_000;
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
      expect(await version(id), id).toBe(GOOD);
      expect(starts(id, GOOD), `${id} started the new version once`).toBe(1);
    }
  }, TEST_TIMEOUT_MS);
});
