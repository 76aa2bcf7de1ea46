import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SystemdNotifier } from '../../src/daemon/systemd-notify.js';
import { TOKEN_FILE } from '../../src/k3s/token-file.js';
import { createLogger } from '../../src/lib/logger.js';
import { Secret } from '../../src/lib/secret.js';
import { JOIN_TOKEN, shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { tempDir } from '../helpers/paths.js';
import { processesMatching, signalIfAlive } from '../helpers/processes.js';

/** What fleetlet's own environment may hold: none of it is k3s's or systemd-notify's business. */
const FLEETLET_SECRETS = {
  FLEETLET_BROKER_AUTH_PASSWORD: 'very-secret-mqtt-password',
  FLEETLET_K3S_TOKEN: 'K10feed::node:very-secret-env-token',
  AWS_SECRET_ACCESS_KEY: 'very-secret-cloud-key',
};

let dir: string;
let cleanup: () => void;
let running: SupervisedFake[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-child-secrets-'));
});
afterEach(async () => {
  for (const fake of running) await shutDown(fake);
  running = [];
  for (const pid of processesMatching(dir)) signalIfAlive(pid, 'SIGKILL');
  cleanup();
});

async function start(fakeEnv: Record<string, string>, overrides: Parameters<typeof supervisedFake>[2] = {}): Promise<SupervisedFake> {
  const fake = await supervisedFake(dir, fakeEnv, overrides);
  running.push(fake);
  await fake.supervisor.start();
  return fake;
}

/** The variables of a live process as the kernel shows them to anyone who may read /proc/<pid>/environ. */
function environOf(pid: number): Record<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return Object.fromEntries(entries.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
}

describe('secrets and the children fleetlet starts', () => {
  it('gives the k3s child only allow-listed variables: no fleetlet secret, no join token, no K3S_* of its own', async () => {
    const fake = await start({ ...FLEETLET_SECRETS, K3S_URL: 'https://stale.example:6443', LC_ALL: 'C.UTF-8', HTTPS_PROXY: 'http://proxy.example:3128' });
    await waitFor(() => fake.supervisor.status().state === 'running-healthy', 'k3s healthy', 30_000);
    const pid = fake.supervisor.status().pid!;
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    expect(environ).not.toContain('very-secret');
    expect(environ).not.toContain(JOIN_TOKEN);
    const env = environOf(pid);
    expect(Object.keys(env).filter((name) => name.startsWith('K3S_') || name.startsWith('FLEETLET_'))).toEqual([]);
    expect(env).toMatchObject({ LC_ALL: 'C.UTF-8', HTTPS_PROXY: 'http://proxy.example:3128', PATH: process.env.PATH });
    // Nothing beyond the allow-list, the launch id fleetlet adopts k3s by, and what the test's fake needs
    // (k3s.passEnv: FAKE_K3S_*).
    const allowed = /^(PATH|HOME|LANG|LANGUAGE|TZ|LC_\w+|(CONTAINERD_)?(HTTP_PROXY|HTTPS_PROXY|NO_PROXY)|http_proxy|https_proxy|no_proxy|NODE_AGENT_LAUNCH_ID|FAKE_K3S_\w+)$/;
    expect(Object.keys(env).filter((name) => !allowed.test(name))).toEqual([]);
  });

  it('reports a spawn error as a code and fleetlet\'s own reason, never with the error message', async () => {
    const notExecutable = join(dir, 'bin-k3s');
    writeFileSync(notExecutable, '#!/bin/sh\nexit 0\n');
    chmodSync(notExecutable, 0o644);
    const fake = await start({}, { binaryPath: notExecutable });
    await waitFor(() => fake.kinds().includes('k3s.start-failed'), 'the start to fail', 30_000);
    const failed = fake.events.find((event) => event.kind === 'k3s.start-failed')!;
    expect(failed.detail).toEqual({ step: 'spawn', code: 'EACCES', reason: expect.stringContaining('not executable') });
    // Node's message names the spawn call and the path; fleetlet's events carry only what it wrote itself.
    expect(JSON.stringify(failed)).not.toContain('spawn ');
  });

  it('never publishes a secret that a refused spawn quotes in its message (a NUL byte in an argument)', async () => {
    const secret = 'very-secret-after-a-nul';
    const fake = await start({}, { invocation: () => ({ args: ['agent', '--node-label', `site=\0${secret}`], env: {} }) });
    await waitFor(() => fake.kinds().includes('k3s.start-failed'), 'the start to fail', 30_000);
    const failed = fake.events.find((event) => event.kind === 'k3s.start-failed')!;
    expect(failed.detail).toMatchObject({ step: 'spawn', code: 'ERR_INVALID_ARG_VALUE' });
    expect(JSON.stringify(fake.events)).not.toContain(secret);
  });

  it('refuses to start k3s with a join token that holds a control character, set after the config was checked', async () => {
    const secret = 'K10feed::node:very-secret\nsecond-line';
    const fake = await start({}, { invocation: () => ({ args: ['agent', '--server', 'https://10.0.0.1:6443'], env: {}, token: new Secret(secret) }) });
    await waitFor(() => fake.kinds().includes('k3s.start-failed'), 'the start to fail', 30_000);
    const failed = fake.events.find((event) => event.kind === 'k3s.start-failed')!;
    expect(failed.detail).toMatchObject({ step: 'prepare', code: 'AgentArgsError', reason: expect.stringContaining('control character') });
    expect(JSON.stringify(fake.events)).not.toContain('very-secret');
    expect(existsSync(join(fake.workDir, TOKEN_FILE))).toBe(false);
  });

  it('gives systemd-notify only NOTIFY_SOCKET and PATH, not fleetlet\'s environment', async () => {
    const dump = join(dir, 'notify-env.json');
    const recorder = join(dir, 'systemd-notify');
    writeFileSync(recorder, `#!${process.execPath}\nrequire('node:fs').writeFileSync(${JSON.stringify(dump)}, JSON.stringify(process.env));\n`);
    chmodSync(recorder, 0o755);
    const env = { ...process.env, ...FLEETLET_SECRETS, NOTIFY_SOCKET: join(dir, 'notify.sock') };
    const notifier = new SystemdNotifier(env, createLogger({ level: 'silent' }), recorder);
    await notifier.notify('READY=1');
    const seen = JSON.parse(readFileSync(dump, 'utf8')) as Record<string, string>;
    expect(seen).toEqual({ NOTIFY_SOCKET: join(dir, 'notify.sock'), PATH: process.env.PATH });
  });
});
