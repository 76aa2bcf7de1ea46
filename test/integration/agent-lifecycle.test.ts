import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { descendantsOf } from '../helpers/processes.js';

const { dir, cleanup } = tempDir();
afterAll(cleanup);

describe('the agent process', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('stops cleanly on %s: exit 0, parts stopped in reverse, no orphans', async (signal) => {
    const config = writeAgentConfig(join(dir, signal), { log: { level: 'debug' } });
    const agent = startCli(['agent', '--config', config]);
    await waitFor(() => agent.output().includes('fleetlet agent running'), 'the agent to run');
    const pid = agent.child.pid!;
    const stopAsked = Date.now();
    agent.child.kill(signal);
    const code = await agent.exited;
    const stopMs = Date.now() - stopAsked;
    expect(code).toBe(0);
    // Within the daemon's stop bound (10 s); the figure itself is recorded by the benchmarks, not asserted here.
    expect(stopMs).toBeLessThan(10_000);
    const stopped = agent.output().split('\n').find((line) => line.includes('"msg":"stopped"'));
    expect(JSON.parse(stopped!)).toMatchObject({ clean: true, failed: [], timedOut: [] });
    expect(descendantsOf(pid)).toEqual([]);
  });

  it('says READY=1, then STOPPING=1, to systemd when NOTIFY_SOCKET is set, and pings the watchdog', async () => {
    const socket = join(dir, 'notify.sock');
    const receiver = spawn('python3', [join(REPO_ROOT, 'test/fixtures/notify-receiver.py'), socket]);
    let received = '';
    receiver.stdout.on('data', (chunk: Buffer) => (received += chunk.toString()));
    try {
      await waitFor(() => received.includes('listening'), 'the notify socket');
      const config = writeAgentConfig(join(dir, 'notify'));
      const agent = startCli(['agent', '--config', config], { NOTIFY_SOCKET: socket, WATCHDOG_USEC: '400000' });
      await waitFor(() => received.includes('READY=1'), 'READY=1');
      expect(received).toContain(`MAINPID=${agent.child.pid}`);
      await waitFor(() => (received.match(/WATCHDOG=1/g) ?? []).length >= 2, 'two watchdog pings');
      agent.child.kill('SIGTERM');
      expect(await agent.exited).toBe(0);
      await waitFor(() => received.includes('STOPPING=1'), 'STOPPING=1');
      expect(received.indexOf('READY=1')).toBeLessThan(received.indexOf('STOPPING=1'));
    } finally {
      receiver.kill();
    }
  });

  it('sends nothing to systemd without NOTIFY_SOCKET and still runs', async () => {
    const config = writeAgentConfig(join(dir, 'plain'));
    const agent = startCli(['agent', '--config', config]);
    await waitFor(() => agent.output().includes('fleetlet agent running'), 'the agent to run');
    expect(agent.output()).not.toContain('systemd notification failed');
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
  });

  it('exits 78 with the problems when the config is bad, before touching the state dir', () => {
    const config = writeAgentConfig(join(dir, 'bad'), { telemetry: { intervalSeconds: 1 } });
    const result = runCli(['agent', '--config', config]);
    expect(result.code).toBe(78);
    expect(result.stderr).toContain('telemetry.intervalSeconds');
  });

  it('never logs a secret: the join token from the config stays out of the output', async () => {
    const config = writeAgentConfig(join(dir, 'secret'), {
      k3s: { enabled: false, token: 'K10deadbeef::server:very-secret-value' },
      log: { level: 'trace' },
    });
    const agent = startCli(['agent', '--config', config]);
    await waitFor(() => agent.output().includes('fleetlet agent running'), 'the agent to run');
    agent.child.kill('SIGTERM');
    await agent.exited;
    expect(agent.output()).not.toContain('very-secret-value');
  });
});

describe('the command line', () => {
  it('prints the version and help with exit 0', () => {
    const version = runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const help = runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('agent');
    expect(help.stdout).toContain('config');
  });

  it.each([
    [['bogus'], "unknown command 'bogus'"],
    [['agnet'], '(Did you mean agent?)'],
    [['agent', '--confg', 'x'], "unknown option '--confg'"],
    [['config'], 'Usage: fleetlet config'],
    [[], 'Usage: fleetlet'],
  ])('exits 64 for %j', (args, message) => {
    const result = runCli(args);
    expect(result.code).toBe(64);
    expect(result.stdout + result.stderr).toContain(message);
  });

  it('prints the JSON Schema of the config', () => {
    const result = runCli(['config', 'schema']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ type: 'object', required: ['broker'], additionalProperties: false });
  });
});
