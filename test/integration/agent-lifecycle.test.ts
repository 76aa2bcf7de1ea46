import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isolatedK3s, writeAgentConfig } from '../helpers/agent-config.js';
import { runCli, startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { descendantsOf, processesMatching, signalIfAlive } from '../helpers/processes.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { mosquittoAvailable, startMosquitto } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';

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

  it.skipIf(!mosquittoAvailable())(
    'never logs a secret: with k3s supervised and the broker logged in, neither the join token nor the MQTT password reaches the log, a command line, the events on the wire or the environment of k3s',
    { timeout: 90_000 },
    async () => {
      const broker = await startMosquitto();
      const home = join(dir, 'secret');
      const token = 'K10deadbeef::server:very-secret-join-value';
      const password = 'very-secret-mqtt-password';
      const config = writeAgentConfig(home, {
        broker: { url: broker.url, auth: { username: 'test-device' } },
        k3s: await isolatedK3s(home, FAKE_K3S, { token }),
        log: { level: 'trace' },
      });
      // The fleet's view: everything the device publishes, events included.
      const wire = await Observer.connect(broker.url, ['fleetlet/v1/devices/test-device/#']);
      // The password in fleetlet's environment, as a systemd EnvironmentFile would put it: k3s must not inherit it.
      const agent = startCli(['agent', '--config', config], {
        FLEETLET_BROKER_AUTH_PASSWORD: password,
        FAKE_K3S_AS_ROOT: '1',
        FAKE_K3S_RECORD_DIR: home,
        FAKE_K3S_NODE_CONFIG_PATH: join(home, 'etc-rancher-node'),
      });
      try {
        const status = () => {
          try {
            return JSON.parse(readFileSync(join(home, 'state', 'node-agent', 'agent-status.json'), 'utf8')) as { state?: string; pid?: number };
          } catch {
            return {};
          }
        };
        await waitFor(() => status().state === 'running-healthy', 'k3s healthy under the agent', 60_000);
        await wire.waitFor((m) => m.topic.endsWith('/presence') && (m.json as { state?: string }).state === 'online', 'the agent online at the broker');
        // Both secrets were really used: k3s joined with the token (read from its token file), the broker login worked.
        const starts = readdirSync(home).filter((name) => /^\d+\.json$/.test(name)).map((name) => readFileSync(join(home, name), 'utf8'));
        expect(starts.join('\n')).toContain(`"tokenLength":${token.length}`);
        // The k3s child's argv as it recorded it at start, and the live command lines of k3s and fleetlet.
        const argvs = starts.map((start) => (JSON.parse(start) as { argv: string[] }).argv.join(' '));
        const commandLines = [status().pid!, agent.child.pid!].map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
        expect(commandLines[0]).toContain('agent');
        for (const text of [...commandLines, ...argvs]) {
          expect(text).not.toContain('very-secret');
        }
        // The environment of k3s (the "k3s init" parent and the agent it runs), readable in /proc as long as it runs.
        const k3sPids = [status().pid!, ...descendantsOf(status().pid!)];
        expect(k3sPids.length).toBeGreaterThan(1);
        for (const pid of k3sPids) expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).not.toContain('very-secret');
        // The events reached the wire (k3s.up among them), and no payload the device published holds a secret.
        await wire.waitFor((m) => m.topic.endsWith('/events') && m.text.includes('k3s.up'), 'the k3s.up event on the wire');
        agent.child.kill('SIGTERM');
        await agent.exited;
        expect(wire.messages.filter((m) => m.topic.endsWith('/events')).length).toBeGreaterThan(0);
        for (const message of wire.messages) expect(message.text).not.toContain('very-secret');
        expect(agent.output()).toContain('"level":"debug"');
        expect(agent.output()).not.toContain('very-secret');
      } finally {
        await wire.close();
        agent.child.kill('SIGKILL');
        for (const pid of processesMatching(join(home, 'data'))) signalIfAlive(pid, 'SIGKILL');
        await broker.close();
      }
    },
  );
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
