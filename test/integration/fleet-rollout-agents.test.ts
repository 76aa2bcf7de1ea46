import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import type { RolloutState } from '../../src/fleet/rollout-state.js';
import { isolatedK3s, savedK3sState } from '../helpers/agent-config.js';
import { waitFor } from '../helpers/wait.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { processesMatching } from '../helpers/processes.js';
import { sha256, startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { shellK3sWithHealthz } from '../fixtures/command-agent-fake-k3s.js';

const OLD = 'v1.36.3+k3s1';
const NEW = 'v1.37.0+k3s1';
const DEVICES = Array.from({ length: 20 }, (_, i) => `agent-${String(i + 1).padStart(2, '0')}`);
/** These download from a mirror whose new build never becomes healthy: their upgrades roll back. */
const FAILING = new Set(['agent-07', 'agent-08', 'agent-09']);

/** Twenty real `fleetlet agent` processes, each supervising its own (shell) k3s, upgraded by `fleet rollout`. */
describe('fleet rollout over 20 real agent processes', () => {
  let broker: TestBroker;
  let good: ReleaseServer;
  let bad: ReleaseServer;
  let dir: { dir: string; cleanup: () => void };
  let keyFile: string;
  let fleet: Observer;
  const agents: ChildProcess[] = [];
  const output = new Map<string, string>();
  const oldBinary = shellK3sWithHealthz(OLD, 'healthy');
  const newBinary = shellK3sWithHealthz(NEW, 'healthy');

  beforeAll(async () => {
    broker = await startMosquitto();
    good = await startReleaseServer();
    bad = await startReleaseServer();
    good.publish(NEW, { k3s: newBinary });
    bad.publish(NEW, { k3s: shellK3sWithHealthz(NEW, 'never-healthy') });
    dir = tempDir('fleetlet-rollout-agents-');
    keyFile = join(dir.dir, 'ops.key');
    const key = generateSigningKey(keyFile, 'ops');
    fleet = await Observer.connect(broker.url, ['fleetlet/v1/devices/+/presence']);
    for (const [index, id] of DEVICES.entries()) {
      const root = join(dir.dir, id);
      const binaryPath = join(root, 'bin', 'k3s');
      mkdirSync(dirname(binaryPath), { recursive: true });
      writeFileSync(binaryPath, oldBinary);
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
    for (const id of DEVICES) {
      await waitFor(() => savedK3sState(join(dir.dir, id, 'state')) === 'running-healthy', () => `${id} with a healthy k3s (${output.get(id)!.slice(-2000)})`, 90_000);
    }
    await waitFor(
      () => new Set(fleet.messages.filter((m) => (m.json as { state?: string }).state === 'online').map((m) => m.topic)).size === 20,
      'all 20 online',
      30_000,
    );
  }, 180_000);

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
      for (const pid of processesMatching(dir.dir)) process.kill(pid, 'SIGKILL');
      await waitFor(() => processesMatching(dir.dir).length === 0, 'no process left from the devices', 20_000);
    }
    await fleet?.client.endAsync();
    await good?.close();
    await bad?.close();
    await broker?.close();
    dir?.cleanup();
  }, 60_000);

  const installed = (id: string) => sha256(readFileSync(join(dir.dir, id, 'bin', 'k3s')));

  it('upgrades canaries, then batches, and halts when the failures pass the threshold', async () => {
    const stateFile = join(dir.dir, 'rollout.json');
    const args = ['fleet', 'rollout', 'k3s', '--to', NEW, '--canary-count', '2', '--batch-size', '4', '--max-failures', '2', '--device-timeout', '90', '--state', stateFile, '--broker', broker.url, '--allow-plaintext', '--key', keyFile];
    const run = await new Promise<{ code: number; stdout: string }>((resolve) =>
      execFile(process.execPath, [FLEETLET_BUNDLE, ...args], { timeout: 240_000 }, (err, stdout) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout }),
      ),
    );
    expect(run.code, run.stdout).toBe(1);
    expect(run.stdout).toContain('batch 1/6 (canaries): agent-01, agent-02');
    expect(run.stdout).toMatch(/halted: 3 failure\(s\) after batch 3, more than the 2 allowed/);
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as RolloutState;
    for (const id of DEVICES) {
      const position = DEVICES.indexOf(id);
      if (position < 10 && !FAILING.has(id)) {
        expect(state.devices[id]?.status, id).toBe('succeeded');
        expect(installed(id), id).toBe(sha256(newBinary));
      } else if (FAILING.has(id)) {
        expect(state.devices[id], id).toMatchObject({ status: 'failed', detail: expect.stringContaining('rolled_back') });
        expect(installed(id), id).toBe(sha256(oldBinary));
      } else {
        expect(state.devices[id]?.status, id).toBe('pending');
        expect(installed(id), id).toBe(sha256(oldBinary));
      }
    }
    // Every agent is still up, and the rolled-back ones run a healthy k3s again.
    expect(agents.every((child) => child.exitCode === null)).toBe(true);
  }, 300_000);
});
