import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { processStartTime } from '../../src/k3s/agent-process.js';
import { currentBootId } from '../../src/k3s/process-check.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildAgentInvocation } from '../../src/k3s/args.js';
import { TOKEN_FILE } from '../../src/k3s/token-file.js';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { descendantsOf, processesMatching, signalIfAlive } from '../helpers/processes.js';
import { FAKE_K3S, fakeK3sBinary } from '../helpers/fake-k3s.js';
import { isAlive, JOIN_TOKEN, shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { tempDir } from '../helpers/paths.js';

let dir: string;
let cleanup: () => void;
let running: SupervisedFake[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-sup-'));
});
afterEach(async () => {
  for (const fake of running) await shutDown(fake);
  running = [];
  // Anything a test left running on purpose (a k3s that was not adopted, a stand-in process).
  for (const pid of processesMatching(dir)) signalIfAlive(pid, 'SIGKILL');
  cleanup();
});


async function start(
  env: Record<string, string> = {},
  runs?: Record<string, unknown>[],
  overrides: Parameters<typeof supervisedFake>[2] = {},
): Promise<SupervisedFake> {
  const fake = await supervisedFake(dir, env, overrides);
  if (runs) fake.script(runs);
  running.push(fake);
  await fake.supervisor.start();
  return fake;
}

const state = (fake: SupervisedFake) => fake.supervisor.status().state;
const logText = (fake: SupervisedFake) => readFileSync(join(fake.workDir, 'agent-output.log'), 'utf8');

describe('k3s supervisor', () => {
  it('starts k3s, reports it healthy and stops it with one SIGTERM, leaving no process behind', async () => {
    const fake = await start();
    await waitFor(() => state(fake) === 'running-healthy', 'healthy', 30_000);
    const { pid } = fake.supervisor.status();
    expect(fake.kinds()).toContain('k3s.up');
    await waitFor(() => fake.supervisor.status().registered, 'registered line seen', 30_000);

    // The join token reached k3s through a 0600 file in fleetlet's work dir, never its command line or environment.
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).toContain('--server');
    expect(cmdline).not.toContain(JOIN_TOKEN);
    const tokenFile = join(fake.workDir, TOKEN_FILE);
    expect(cmdline).toContain(`--token-file\0${tokenFile}`);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const record = JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as { tokenSource: string; tokenLength: number; argv: string[] };
    expect(record).toMatchObject({ tokenSource: 'file', tokenLength: JOIN_TOKEN.length });
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain(JOIN_TOKEN);
    expect(readFileSync(`/proc/${process.pid}/cmdline`, 'utf8')).not.toContain(JOIN_TOKEN);

    await fake.supervisor.stopK3s('test');
    expect(state(fake)).toBe('held');
    expect(fake.supervisor.status().lastExit).toMatchObject({ code: 0, signal: null });
    expect(isAlive(pid!)).toBe(false);
    expect(descendantsOf(process.pid)).toEqual([]);
    expect(logText(fake)).not.toContain('Second shutdown signal');
    expect(fake.supervisor.recentLogLines(100).some((line) => line.includes('Starting k3s agent'))).toBe(true);
  });

  it('passes a token file by path: k3s reads it, the command line shows only the path', async () => {
    const tokenFile = join(dir, 'join-token');
    writeFileSync(tokenFile, `${JOIN_TOKEN}\n`, { mode: 0o600 });
    const k3s = ConfigSchema.parse({
      broker: { url: 'mqtts://broker.example:8883' },
      k3s: { serverUrl: 'https://10.0.0.1:6443', tokenFile, dataDir: join(dir, 'data'), disableApiserverLb: true },
    }).k3s;
    const fake = await supervisedFake(dir, {}, { invocation: () => buildAgentInvocation(k3s) });
    running.push(fake);
    await fake.supervisor.start();
    await waitFor(() => state(fake) === 'running-healthy', 'healthy', 30_000);
    const pid = fake.supervisor.status().pid!;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).toContain(`--token-file\0${tokenFile}`);
    expect(cmdline).not.toContain(JOIN_TOKEN);
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain(JOIN_TOKEN);
    const record = JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as { tokenSource: string; tokenLength: number };
    expect(record).toMatchObject({ tokenSource: 'file', tokenLength: JOIN_TOKEN.length });
  });

  it('restarts k3s after it exits 0 on an internal failure', async () => {
    const fake = await start({}, [{ crashAfterMs: 300, crashMode: 'exit0' }, {}]);
    await waitFor(() => fake.kinds().includes('k3s.down'), 'the crash', 30_000);
    expect(fake.events.find((event) => event.kind === 'k3s.down')!.detail).toMatchObject({ code: 0 });
    await waitFor(() => state(fake) === 'running-healthy' && fake.supervisor.status().restarts === 1, 'healthy after restart', 30_000);
    expect(fake.kinds().filter((kind) => kind === 'k3s.up')).toHaveLength(2);
  });

  it('restarts k3s after a SIGKILL from outside', async () => {
    const fake = await start();
    await waitFor(() => state(fake) === 'running-healthy', 'healthy', 30_000);
    const first = fake.supervisor.status().pid!;
    process.kill(first, 'SIGKILL');
    await waitFor(() => state(fake) === 'running-healthy' && fake.supervisor.status().pid !== first, 'a new healthy k3s', 30_000);
    expect(fake.events.find((event) => event.kind === 'k3s.down')!.detail).toMatchObject({ signal: 'SIGKILL' });
  });

  it('declares a crash loop after repeated exits and says so once', async () => {
    const fake = await start({}, [{ crashAfterMs: 50, crashMode: 'exit1' }]);
    await waitFor(() => state(fake) === 'crash-loop', 'crash loop', 30_000);
    expect(fake.kinds().filter((kind) => kind === 'k3s.down')).toHaveLength(3);
    expect(fake.kinds().filter((kind) => kind === 'k3s.crash-loop')).toHaveLength(1);
    expect(fake.supervisor.status().nextStartAt).toBeGreaterThan(Date.now() + 30_000);
  });

  it('turns a missing memory cgroup into an event with the cmdline.txt fix', async () => {
    const fake = await start({ FAKE_K3S_CGROUP: 'v1-no-memory' });
    await waitFor(() => state(fake) === 'crash-loop', 'crash loop', 30_000);
    const cgroup = fake.events.filter((event) => event.kind === 'k3s.cgroup-missing');
    expect(cgroup.length).toBeGreaterThanOrEqual(1);
    expect(cgroup[0]!.remedy).toContain('cgroup_memory=1 cgroup_enable=memory');
    expect(cgroup[0]!.remedy).toContain('/boot/firmware/cmdline.txt');
    expect(fake.events.find((event) => event.kind === 'k3s.crash-loop')!.remedy).toContain('cmdline.txt');
    expect(fake.supervisor.status().lastExit).toMatchObject({ code: 1 });
  });

  it('reports a rejected node password while k3s keeps retrying without exiting', async () => {
    const fake = await start({ FAKE_K3S_SERVER: 'password-rejected' });
    await waitFor(() => fake.kinds().includes('k3s.password-rejected'), 'password event', 30_000);
    const pid = fake.supervisor.status().pid!;
    await waitFor(() => (logText(fake).match(/Node password rejected/g) ?? []).length >= 4, 'several retries', 30_000);
    expect(fake.kinds().filter((kind) => kind === 'k3s.password-rejected')).toHaveLength(1);
    expect(fake.supervisor.status()).toMatchObject({ state: 'starting', pid, problem: { kind: 'k3s.password-rejected' } });
    expect(fake.events.find((event) => event.kind === 'k3s.password-rejected')!.remedy).toMatch(/kubectl delete node/);
    expect(fake.kinds()).not.toContain('k3s.down');
  });

  it('kills a k3s that ignores SIGTERM after the grace period, having sent only one SIGTERM', async () => {
    const fake = await start({ FAKE_K3S_ON_SIGTERM: 'hang' });
    await waitFor(() => state(fake) === 'running-healthy', 'healthy', 30_000);
    const pid = fake.supervisor.status().pid!;
    await fake.supervisor.stopK3s('test');
    expect(fake.kinds()).toContain('k3s.stop-forced');
    expect(fake.supervisor.status().lastExit).toMatchObject({ signal: 'SIGKILL' });
    expect(isAlive(pid)).toBe(false);
    expect(logText(fake)).not.toContain('Second shutdown signal');
    expect(descendantsOf(process.pid)).toEqual([]);
  });

  it('notices a k3s whose kubelet stops answering healthz', async () => {
    const fake = await start({ FAKE_K3S_HEALTHZ_FAIL_AFTER_MS: '1500' });
    await waitFor(() => state(fake) === 'running-healthy', 'healthy', 30_000);
    await waitFor(() => state(fake) === 'running-unhealthy', 'unhealthy', 30_000);
    expect(fake.kinds()).toContain('k3s.unhealthy');
  });

  it('restarts on request: one SIGTERM, then a new process', async () => {
    const fake = await start();
    await waitFor(() => state(fake) === 'running-healthy', 'healthy', 30_000);
    const first = fake.supervisor.status().pid!;
    await fake.supervisor.restart();
    expect(isAlive(first)).toBe(false);
    await waitFor(() => state(fake) === 'running-healthy', 'healthy again', 30_000);
    expect(fake.supervisor.status().pid).not.toBe(first);
    expect(fake.supervisor.status().restarts).toBe(1);
  });

  it('leaves k3s running when fleetlet stops, and the next fleetlet adopts it instead of starting another', async () => {
    const first = await start();
    await waitFor(() => state(first) === 'running-healthy', 'healthy', 30_000);
    const pid = first.supervisor.status().pid!;
    // What a SIGTERM of fleetlet (systemctl stop or restart, a self-update) does to the k3s part.
    await first.supervisor.stop();
    running = [];
    expect(isAlive(pid)).toBe(true);

    // The adopted k3s keeps serving healthz where the first one told it to.
    const second = await start({}, undefined, { healthzUrl: first.healthzUrl });
    await waitFor(() => state(second) === 'running-healthy', 'adopted and healthy', 30_000);
    expect(second.supervisor.status()).toMatchObject({ pid, adopted: true, version: 'v1.36.3+k3s1' });
    expect(second.kinds()).toContain('k3s.adopted');
    expect(readdirSync(dir).filter((name) => /^\d+\.json$/.test(name))).toHaveLength(1); // one k3s ever started

    await shutDown(second);
    await waitFor(() => !isAlive(pid), 'adopted k3s stopped', 30_000);
    expect(descendantsOf(process.pid)).toEqual([]);
  });

  it('does not adopt, or signal, a process that merely reuses the recorded pid', async () => {
    const fake = await supervisedFake(dir);
    running.push(fake);
    // A record left by a k3s that died while fleetlet was down; its pid now belongs to another process (this one).
    mkdirSync(fake.workDir, { recursive: true });
    writeFileSync(
      join(fake.workDir, 'agent-process.json'),
      JSON.stringify({ pid: process.pid, startTime: '1', binaryPath: FAKE_K3S, startedAt: Date.now() - 60_000 }),
    );
    await fake.supervisor.start();
    await waitFor(() => state(fake) === 'running-healthy', 'a fresh k3s', 30_000);
    expect(fake.supervisor.status()).toMatchObject({ adopted: false });
    expect(fake.supervisor.status().pid).not.toBe(process.pid);
    expect(fake.kinds()).not.toContain('k3s.adopted');
    await shutDown(fake);
    expect(isAlive(process.pid)).toBe(true);
  });

  it('does not adopt a recorded k3s from another boot, nor signal it', async () => {
    const first = await start();
    await waitFor(() => state(first) === 'running-healthy', 'healthy', 30_000);
    const pid = first.supervisor.status().pid!;
    await first.supervisor.stop();
    running = [];
    // Pids and start ticks begin again at every boot: this record is from before a reboot, as far as the check knows.
    const recordFile = join(first.workDir, 'agent-process.json');
    writeFileSync(recordFile, JSON.stringify({ ...JSON.parse(readFileSync(recordFile, 'utf8')), bootId: 'another-boot' }));

    const second = await start();
    await waitFor(() => state(second) === 'running-healthy', 'a fresh k3s', 30_000);
    expect(second.supervisor.status()).toMatchObject({ adopted: false });
    expect(second.supervisor.status().pid).not.toBe(pid);
    expect(second.kinds()).not.toContain('k3s.adopted');
    expect(isAlive(pid)).toBe(true);
  });

  it('does not adopt, or signal, a process with the recorded pid and start time that does not run k3s', async () => {
    const other = spawn('sleep', ['300'], { stdio: 'ignore' });
    await waitFor(() => processStartTime(other.pid!) !== undefined, 'the other process', 30_000);
    const fake = await supervisedFake(dir);
    running.push(fake);
    mkdirSync(fake.workDir, { recursive: true });
    const record = { pid: other.pid, startTime: processStartTime(other.pid!), bootId: currentBootId(), binaryPath: FAKE_K3S, startedAt: Date.now() };
    writeFileSync(join(fake.workDir, 'agent-process.json'), JSON.stringify(record));
    await fake.supervisor.start();
    await waitFor(() => state(fake) === 'running-healthy', 'a fresh k3s', 30_000);
    expect(fake.supervisor.status()).toMatchObject({ adopted: false });
    expect(fake.kinds()).not.toContain('k3s.adopted');
    await shutDown(fake);
    expect(isAlive(other.pid!)).toBe(true);
    other.kill('SIGKILL');
  });

  it("adopts a k3s that re-exec'd into its unpacked copy under the data dir, as the real binary does", async () => {
    // /proc/<pid>/exe of the real k3s is <data-dir>/data/<hash>/bin/k3s-agent, not the binary it was started as.
    const unpacked = join(dir, 'data', 'data', '0123abcd', 'bin', 'k3s-agent');
    mkdirSync(join(unpacked, '..'), { recursive: true });
    copyFileSync(execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(), unpacked);
    chmodSync(unpacked, 0o755);
    const agent = spawn(unpacked, ['300'], { stdio: 'ignore' });
    await waitFor(() => processStartTime(agent.pid!) !== undefined, 'the unpacked agent', 30_000);
    const fake = await supervisedFake(dir);
    running.push(fake);
    mkdirSync(fake.workDir, { recursive: true });
    const record = { pid: agent.pid, startTime: processStartTime(agent.pid!), bootId: currentBootId(), binaryPath: FAKE_K3S, startedAt: Date.now() };
    writeFileSync(join(fake.workDir, 'agent-process.json'), JSON.stringify(record));
    await fake.supervisor.start();
    expect(fake.supervisor.status()).toMatchObject({ pid: agent.pid, adopted: true });
    expect(fake.kinds()).toContain('k3s.adopted');
    const exited = new Promise((resolve) => agent.once('exit', (_code, signal) => resolve(signal)));
    await fake.supervisor.stopK3s('test');
    expect(await exited).toBe('SIGTERM');
  });

  it('keeps a k3s stopped on request stopped for the next fleetlet, until restart() lifts the hold', async () => {
    const first = await start();
    await waitFor(() => state(first) === 'running-healthy', 'healthy', 30_000);
    await shutDown(first);
    running = [];
    const second = await start();
    await waitFor(() => state(second) === 'held', 'held', 30_000);
    expect(readdirSync(dir).filter((name) => /^\d+\.json$/.test(name))).toHaveLength(1);
    await second.supervisor.restart();
    await waitFor(() => state(second) === 'running-healthy', 'healthy after the hold was lifted', 30_000);
    expect(existsSync(join(second.workDir, 'agent-held'))).toBe(false);
    expect(readdirSync(dir).filter((name) => /^\d+\.json$/.test(name))).toHaveLength(2);
  });

  it('gives a restart asked while a launch is under way a launch of its own', async () => {
    let launches = 0;
    let inLaunch: () => void = () => {};
    let release: () => void = () => {};
    const entered = new Promise<void>((resolve) => (inLaunch = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    const fake = await start({}, undefined, {
      beforeLaunch: async () => {
        launches += 1;
        if (launches !== 2) return;
        inLaunch();
        await gate;
      },
    });
    await waitFor(() => state(fake) === 'running-healthy', 'healthy', 30_000);
    const firstRestart = fake.supervisor.restart();
    await entered;
    // An upgrade swaps the binary now and asks again; the launch under way may already have read the old one.
    const secondRestart = fake.supervisor.restart();
    release();
    await firstRestart;
    await secondRestart;
    expect(launches).toBe(3);
    await waitFor(() => state(fake) === 'running-healthy', 'healthy after both restarts', 30_000);
    expect(fake.supervisor.status().restarts).toBe(2);
  });

  it('warns when another k3s agent runs from the same binary (e.g. install.sh\'s service), once', async () => {
    const binaryPath = join(dir, 'usr-local-bin-k3s');
    writeFileSync(binaryPath, fakeK3sBinary(1024, 'shared'), { mode: 0o755 });
    const foreign = spawn(binaryPath, ['agent', '--server', 'https://10.0.0.1:6443', '--data-dir', join(dir, 'foreign'), '--disable-apiserver-lb'], {
      env: { ...process.env, K3S_TOKEN: 'x', FAKE_K3S_AS_ROOT: '1', FAKE_K3S_HEALTHZ: 'none', FAKE_K3S_NODE_CONFIG_PATH: join(dir, 'foreign-node') },
      stdio: 'ignore',
    });
    try {
      await waitFor(() => readFileSync(`/proc/${foreign.pid}/cmdline`, 'utf8').includes(`${binaryPath}\0agent`), 'the other agent', 30_000);
      const fake = await supervisedFake(dir, {}, { binaryPath });
      running.push(fake);
      fake.script([{ crashAfterMs: 200, crashMode: 'exit0' }, {}]);
      await fake.supervisor.start();
      await waitFor(() => state(fake) === 'running-healthy' && fake.supervisor.status().restarts === 1, 'own k3s healthy after a restart', 30_000);
      const warnings = fake.events.filter((event) => event.kind === 'k3s.foreign-process');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.detail).toEqual({ pids: [foreign.pid] });
      expect(warnings[0]!.remedy).toContain('systemctl disable --now k3s-agent');
    } finally {
      foreign.kill('SIGTERM');
    }
  });

  it('reports a missing binary honestly and starts once it appears', async () => {
    const binaryPath = join(dir, 'bin-k3s');
    const fake = await supervisedFake(dir, {}, { binaryPath });
    running.push(fake);
    await fake.supervisor.start();
    await waitFor(() => state(fake) === 'not-installed', 'not installed', 30_000);
    expect(fake.kinds().filter((kind) => kind === 'k3s.not-installed')).toHaveLength(1);
    copyFileSync(FAKE_K3S, binaryPath);
    chmodSync(binaryPath, 0o755);
    await waitFor(() => state(fake) !== 'not-installed', 'started', 30_000);
    expect(fake.kinds()).not.toContain('k3s.start-failed');
  });
});
