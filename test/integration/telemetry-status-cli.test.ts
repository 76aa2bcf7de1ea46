import { createServer } from 'node:http';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { fromAgent } from '../../src/cli/status.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { runCli, startCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';
import { freePort } from '../helpers/ports.js';

async function answers(port: number): Promise<boolean> {
  try {
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
  } catch {
    return false;
  }
}

async function startAgent() {
  const { dir, cleanup } = tempDir('fleetlet-status-');
  onTestFinished(cleanup);
  const port = await freePort();
  const config = writeAgentConfig(dir, {
    device: { id: 'status-test', name: 'Bench board', labels: { site: 'lab' } },
    telemetry: { intervalSeconds: 5, http: { enabled: true, port } },
  });
  // The same state directory, with the status socket off: `status` must then read the database.
  const offline = writeAgentConfig(join(dir, 'offline-view'), {
    stateDir: join(dir, 'state'),
    telemetry: { http: { enabled: false }, statusSocket: { enabled: false } },
  });
  const agent = startCli(['agent', '--config', config]);
  onTestFinished(async () => {
    if (agent.child.exitCode === null) {
      agent.child.kill('SIGTERM');
      await agent.exited;
    }
  });
  await waitFor(() => answers(port), `the agent to answer on ${port}`, 20_000).catch((error: Error) => {
    throw new Error(`${error.message}: ${agent.output()}`);
  });
  return { dir, port, config, offline, agent };
}

describe('fleetlet status', () => {
  it('shows the running agent, then its database while it runs, then after it stopped', async () => {
    const { dir, port, config, offline, agent } = await startAgent();
    // The inventory and the first sample (which waits for its CPU window) come a moment after start.
    const complete = (answer: { stdout: string }) => answer.stdout.includes('Hardware') && /Sample\s+#\d+/.test(answer.stdout);
    let running = runCli(['status', '--config', config]);
    await waitFor(() => complete(running) || complete((running = runCli(['status', '--config', config]))), "the inventory and a sample in the agent's answer", 20_000);
    expect(running.code).toBe(0);
    expect(running.stdout).toContain(`agent running (pid ${agent.child.pid})`);
    expect(running.stdout).toMatch(/Device\s+status-test\s+"Bench board"\s+labels site=lab/);
    expect(running.stdout).toMatch(/Link\s+not connected/);
    expect(running.stdout).toMatch(/k3s\s+disabled, healthy/);
    expect(running.stdout).toMatch(/Sample\s+#\d+/);

    const json = runCli(['status', '--config', config, '--json']);
    const view = JSON.parse(json.stdout) as { source: string; status: { seq: number }; inventory: { deviceId: string } };
    expect(view).toMatchObject({ source: 'agent', inventory: { deviceId: 'status-test' } });
    // The agent's full view came through its socket: only the agent's user may open it.
    const socket = statSync(join(dir, 'state/status.sock'));
    expect([socket.isSocket(), socket.mode & 0o777]).toEqual([true, 0o600]);
    // The TCP port every hostNetwork pod reaches no longer has it.
    expect((await fetch(`http://127.0.0.1:${port}/status`)).status).toBe(404);

    // The database, read-only, while the agent writes to it.
    const fromDb = runCli(['status', '--config', offline]);
    expect(fromDb.code, fromDb.stderr).toBe(0);
    expect(fromDb.stdout).toContain('last snapshot from the state database');
    expect(fromDb.stdout).toMatch(/Hardware\s+\S/);

    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    const file = join(dir, 'state/fleetlet.db');
    const before = statSync(file);
    const stopped = runCli(['status', '--config', config]);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toContain('agent not answering; last snapshot from the state database');
    const after = statSync(file);
    expect([after.size, after.mtimeMs]).toEqual([before.size, before.mtimeMs]);
    expect(existsSync(`${file}-wal`) && statSync(`${file}-wal`).size > 0).toBe(false);
  }, 90_000);

  it('says why when there is neither an agent nor a database', async () => {
    const { dir, cleanup } = tempDir('fleetlet-status-');
    onTestFinished(cleanup);
    const config = writeAgentConfig(dir);
    const result = runCli(['status', '--config', config]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/the agent does not answer on \S+\/state\/status\.sock and there is no state database/);
  });

  it('ignores something else answering on the socket with garbage, an error, or too much', async () => {
    const { dir, cleanup } = tempDir('fleetlet-status-');
    onTestFinished(cleanup);
    const socket = join(dir, 'status.sock');
    const answers: [number, string][] = [[200, 'not json'], [200, JSON.stringify({ pid: 1, status: { seq: 'x' } })], [200, 'x'.repeat(300 * 1024)], [500, '{}']];
    for (const [code, body] of answers) {
      const server = createServer((_req, res) => {
        res.statusCode = code;
        res.end(body);
      }).listen(socket);
      await new Promise((r) => server.once('listening', r));
      const view = await fromAgent(socket);
      await new Promise((r) => server.close(r));
      expect(view).toBeUndefined();
    }
  });
});
