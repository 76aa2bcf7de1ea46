import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isolatedK3s, writeAgentConfig } from '../helpers/agent-config.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { isAlive } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { processesMatching, signalIfAlive } from '../helpers/processes.js';
import { runCli } from '../helpers/cli.js';

let dir: string;
let cleanup: () => void;
let configFile: string;
let agents: ChildProcess[] = [];

beforeEach(async () => {
  // No "k3s" in fleetlet's own command line: the upgrade controller would take it for k3s.
  ({ dir, cleanup } = tempDir('fleetlet-agent-e2e-'));
  configFile = writeAgentConfig(dir, {
    device: { id: 'pi-e2e' },
    broker: { url: `mqtt://127.0.0.1:${await freePort()}` },
    k3s: await isolatedK3s(dir, FAKE_K3S, { token: 'K10abc::node:e2e-join-token' }),
    log: { level: 'warn' },
  });
});
afterEach(async () => {
  for (const agent of agents) if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
  for (const pid of processesMatching(join(dir, 'data'))) signalIfAlive(pid, 'SIGKILL');
  agents = [];
  cleanup();
});

function startAgent(): { agent: ChildProcess; exited: Promise<number | null> } {
  const agent = spawn(process.execPath, [FLEETLET_BUNDLE, 'agent', '--config', configFile], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: {
      ...process.env,
      FAKE_K3S_AS_ROOT: '1',
      FAKE_K3S_RECORD_DIR: dir,
      FAKE_K3S_RETRY_MS: '200',
      // Where the real agent would find /etc/rancher/node: the same folder fleetlet was told about.
      FAKE_K3S_NODE_CONFIG_PATH: join(dir, 'etc-rancher-node'),
      FAKE_K3S_SERVER_PASSWORDS: join(dir, 'server-passwords.json'),
    },
  });
  agents.push(agent);
  return { agent, exited: new Promise((resolve) => agent.once('exit', (code) => resolve(code))) };
}

function k3sStatus(): { state?: string; pid?: number; adopted?: boolean } {
  try {
    return JSON.parse(readFileSync(join(dir, 'state', 'node-agent', 'agent-status.json'), 'utf8')) as { state: string; pid: number };
  } catch {
    return {};
  }
}

function k3sStarts(): number {
  return readdirSync(dir).filter((name) => /^\d+\.json$/.test(name)).length;
}

const gone = (pid: number) => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');

describe('the agent supervising k3s', () => {
  it('leaves k3s running when it gets SIGTERM, and the next agent adopts it instead of starting another', async () => {
    const first = startAgent();
    await waitFor(() => k3sStatus().state === 'running-healthy', 'k3s healthy under the first agent', 60_000);
    const { pid } = k3sStatus();
    expect(readFileSync(`/proc/${first.agent.pid}/cmdline`, 'utf8')).not.toContain('k3s');
    const passwordFile = join(dir, 'etc-rancher-node', 'password');
    expect(readFileSync(passwordFile, 'utf8')).toMatch(/^[0-9a-f]{32}\n$/);
    expect(statSync(passwordFile).mode & 0o777).toBe(0o600);
    // k3s registered with the password fleetlet made (and keeps), not one of its own.
    const serverSide = JSON.parse(readFileSync(join(dir, 'server-passwords.json'), 'utf8')) as Record<string, string>;
    expect(Object.values(serverSide)).toEqual([readFileSync(passwordFile, 'utf8').trim()]);

    // What systemctl stop or restart, a self-update or a re-run of install.sh does (KillMode=process).
    first.agent.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(isAlive(pid!)).toBe(true);

    const second = startAgent();
    await waitFor(() => k3sStatus().adopted === true && k3sStatus().state === 'running-healthy', 'adopted by the second agent', 60_000);
    expect(k3sStatus().pid).toBe(pid);
    expect(k3sStarts()).toBe(1);

    second.agent.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(isAlive(pid!)).toBe(true);

    const db = new BetterSqlite3(join(dir, 'state', 'fleetlet.db'), { readonly: true });
    const events = db.prepare('SELECT kind, detail FROM event_log ORDER BY id').all() as { kind: string; detail: string }[];
    db.close();
    const kinds = events.map((event) => event.kind);
    expect(kinds).toEqual(expect.arrayContaining(['k3s.identity', 'k3s.up', 'k3s.adopted']));
    expect(kinds).not.toContain('k3s.down');
    const password = readFileSync(passwordFile, 'utf8').trim();
    expect(events.every((event) => !event.detail.includes(password))).toBe(true);
    expect(events.every((event) => !event.detail.includes('e2e-join-token'))).toBe(true);
  });

  it('stops k3s only on `fleetlet k3s stop`, with one SIGTERM, and keeps it stopped until `fleetlet k3s start`', async () => {
    const agent = startAgent();
    await waitFor(() => k3sStatus().state === 'running-healthy', 'k3s healthy', 60_000);
    const { pid } = k3sStatus();

    const stopped = runCli(['k3s', 'stop', '--config', configFile]);
    expect(stopped, stopped.stderr).toMatchObject({ code: 0 });
    expect(stopped.stdout).toContain(`stopped k3s (pid ${pid})`);
    expect(gone(pid!)).toBe(true);
    // The agent saw k3s exit and, finding the hold, did not start it again.
    await waitFor(() => k3sStatus().state === 'held', 'the agent holding k3s', 30_000);
    expect(k3sStarts()).toBe(1);
    expect(runCli(['k3s', 'status', '--config', configFile]).stdout).toContain('held:');

    const started = runCli(['k3s', 'start', '--config', configFile]);
    expect(started.code).toBe(0);
    await waitFor(() => k3sStatus().state === 'running-healthy', 'k3s started again', 60_000);
    const restarted = k3sStatus().pid!;
    expect(restarted).not.toBe(pid);
    expect(k3sStarts()).toBe(2);

    // Without an agent, the command stops the recorded k3s itself, and the next agent leaves it stopped.
    agent.agent.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(isAlive(restarted)).toBe(true);
    expect(runCli(['k3s', 'stop', '--config', configFile])).toMatchObject({ code: 0, stdout: expect.stringContaining(`pid ${restarted}`) });
    expect(gone(restarted)).toBe(true);
    startAgent();
    await waitFor(() => k3sStatus().state === 'held', 'the next agent keeping k3s stopped', 30_000);
    expect(k3sStarts()).toBe(2);
    expect(readFileSync(join(dir, 'state', 'node-agent', 'agent-output.log'), 'utf8')).not.toContain('Second shutdown signal');
  });
});
