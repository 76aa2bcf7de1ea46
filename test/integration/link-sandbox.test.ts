import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { descendantsOf } from '../helpers/processes.js';
import { mosquittoAvailable } from '../helpers/mosquitto.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';

/** `npm start` as a newcomer runs it: embedded broker, a real agent, the fleet's view; Ctrl-C stops it all. */
it('npm start shows the agent come online, and Ctrl-C stops agent and broker cleanly', async () => {
  const { dir, cleanup } = tempDir('fleetlet-sandbox-');
  const sandbox = spawn(process.execPath, ['--import', 'tsx', 'scripts/sandbox.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', FLEETLET_SANDBOX_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, like a terminal session: Ctrl-C goes to the whole group.
    detached: true,
  });
  let output = '';
  sandbox.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  sandbox.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => sandbox.once('exit', (code) => resolve(code)));
  try {
    await waitFor(() => output.includes('dev-sandbox is online, boot #'), 'the agent online in the fleet view', 45_000);
    // The fleet view shows what telemetry reports through the outbox and the link, k3s's real state included.
    await waitFor(() => /dev-sandbox status #\d+ .*; k3s \S+/.test(output), 'a status sample in the fleet view', 45_000);
    expect(output).toContain(dir);
    if (mosquittoAvailable()) {
      // The hub beside the agent: its URL and how to read it on screen, its API listing the device with the token
      // the sandbox made through the hub's account code, inside the sandbox's directory.
      expect(output).toMatch(/\(mosquitto\)/);
      const hubUrl = /^hub (http:\/\/127\.0\.0\.1:\d+) on SQLite: npx tsx src\/bin\.ts fleet devices \\$/m.exec(output)?.[1];
      expect(hubUrl).toBeDefined();
      const tokenFile = new RegExp(`^  --hub ${hubUrl!.replace(/\./g, '\\.')} --token-file (\\S+)$`, 'm').exec(output)?.[1];
      expect(tokenFile).toBe(join(dir, 'hub/sandbox.token'));
      expect(statSync(tokenFile!).mode & 0o777).toBe(0o600);
      const token = readFileSync(tokenFile!, 'utf8').trim();
      let listed: unknown;
      await waitFor(async () => {
        const response = await fetch(`${hubUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
        listed = response?.ok ? await response.json() : undefined;
        return (listed as { devices?: { deviceId: string; state: string }[] } | undefined)?.devices?.some((d) => d.deviceId === 'dev-sandbox' && d.state === 'online') ?? false;
      }, () => `the hub API listing dev-sandbox online (last answer: ${JSON.stringify(listed)})`, 30_000);
      // The dashboard (built at start, the hub runs from the sources here) and the login the screen prints once.
      const login = new RegExp(`^dashboard ${hubUrl!.replace(/\./g, '\\.')}/ user sandbox, password (\\S+)$`, 'm').exec(output);
      expect(login, output).not.toBeNull();
      expect(login![1]).toBe(readFileSync(join(dir, 'hub/sandbox.password'), 'utf8').trim());
      const shell = await fetch(`${hubUrl}/`);
      expect(shell.status).toBe(200);
      expect(await shell.text()).toMatch(/<script defer src="\/assets\/app\.[0-9a-f]{16}\.js">/);
      const session = await fetch(`${hubUrl}/api/v1/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'sandbox', password: login![1] }),
      });
      expect(session.status).toBe(200);
    } else {
      expect(output).toMatch(/embedded aedes/);
      expect(output).toContain('hub: not run, it needs an MQTT 5 broker');
    }
    const children = descendantsOf(sandbox.pid!);
    expect(children.length).toBeGreaterThan(0);

    process.kill(-sandbox.pid!, 'SIGINT'); // what Ctrl-C in a terminal does
    expect(await exited).toBe(0);
    expect(output).toMatch(/dev-sandbox is offline \(stopped\)/);
    expect(output).toMatch(/agent exited with 0/);
    await waitFor(() => children.every((pid) => !isAlive(pid)), 'no process left behind');
  } finally {
    if (sandbox.exitCode === null) process.kill(-sandbox.pid!, 'SIGKILL');
    cleanup();
  }
}, 90_000);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Where an agent with default paths would write: the sandbox must leave every one of them as it was. */
const HOST_PATHS = ['/etc/rancher', '/etc/rancher/node', '/var/lib/rancher', '/var/lib/fleetlet', '/etc/fleetlet', '/usr/local/bin/k3s', '/usr/local/bin/fleetlet', '/run/k3s'];

function snapshot(paths: string[]): Record<string, string> {
  const seen: Record<string, string> = {};
  for (const path of paths) {
    if (!existsSync(path)) {
      seen[path] = 'absent';
      continue;
    }
    const stat = statSync(path);
    seen[path] = `${stat.mtimeMs} ${stat.isDirectory() ? readdirSync(path).sort().join(',') : stat.size}`;
  }
  return seen;
}

it('npm start with a k3s binary present writes nothing outside its own directory, and shows why k3s cannot start', async () => {
  const { dir, cleanup } = tempDir('fleetlet-sandbox-k3s-');
  mkdirSync(join(dir, 'k3s/bin'), { recursive: true });
  writeFileSync(join(dir, 'k3s/bin/k3s'), fakeK3sBinary(4096), { mode: 0o755 });
  const before = snapshot(HOST_PATHS);
  const sandbox = spawn(process.execPath, ['--import', 'tsx', 'scripts/sandbox.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', FLEETLET_SANDBOX_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  sandbox.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  sandbox.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => sandbox.once('exit', (code) => resolve(code)));
  try {
    // The identity check runs before k3s starts: the node password is written, inside the sandbox.
    await waitFor(() => existsSync(join(dir, 'k3s/node/password')), 'the node password inside the sandbox', 45_000);
    await waitFor(() => output.includes('k3s.start-failed') && output.includes('k3s.serverUrl is not set'), 'why k3s cannot start, on screen', 45_000);
    process.kill(-sandbox.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    expect(snapshot(HOST_PATHS)).toEqual(before);
  } finally {
    if (sandbox.exitCode === null) process.kill(-sandbox.pid!, 'SIGKILL');
    cleanup();
  }
}, 90_000);

it('npm start shows the whole loop: signed commands answered, an outage queued and drained, and how to send one', async () => {
  const { dir, cleanup } = tempDir('fleetlet-sandbox-loop-');
  const sandbox = spawn(process.execPath, ['--import', 'tsx', 'scripts/sandbox.ts'], {
    cwd: REPO_ROOT,
    // A ping every 2 s; the broker goes away 6 s in, for 8 s (the sandbox's own pace is minutes).
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', FLEETLET_SANDBOX_DIR: dir, FLEETLET_SANDBOX_PACE: '2000,6000,8000' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  sandbox.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  sandbox.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => sandbox.once('exit', (code) => resolve(code)));
  try {
    await waitFor(() => output.includes('npx tsx src/bin.ts fleet send ping --device dev-sandbox --allow-plaintext'), 'how to send one', 30_000);
    await waitFor(() => /operator: sent a signed ping (c-\S+)/.test(output), 'a signed ping', 45_000);
    const sent = /operator: sent a signed ping (c-\S+)/.exec(output)![1]!;
    await waitFor(() => output.includes(`dev-sandbox result ${sent} succeeded`), 'the ping answered', 30_000);
    await waitFor(() => output.includes('sandbox: broker down for 8 s'), 'the outage', 30_000);
    await waitFor(() => output.includes('sandbox: broker back'), 'the broker back', 30_000);
    await waitFor(() => /dev-sandbox drained its queue: status #\d+, sampled at \S+ while the broker was down/.test(output), 'the queue drained', 45_000);
    // The operator's env file is what the screen says to source: the real CLI sends a ping with it.
    const env = /^export FLEET_BROKER_URL=(\S+) FLEET_SIGNING_KEY=(\S+)\n$/.exec(readFileSync(join(dir, 'operator.env'), 'utf8'));
    expect(env).not.toBeNull();
    const mine = runCli(['fleet', 'send', 'ping', '--device', 'dev-sandbox', '--allow-plaintext'], { FLEET_BROKER_URL: env![1]!, FLEET_SIGNING_KEY: env![2]! }, 60_000);
    expect(mine.stderr + mine.stdout).toMatch(/succeeded/);
    expect(mine.code).toBe(0);
    process.kill(-sandbox.pid!, 'SIGINT');
    expect(await exited).toBe(0);
  } finally {
    if (sandbox.exitCode === null) process.kill(-sandbox.pid!, 'SIGKILL');
    cleanup();
  }
}, 120_000);
