import { spawn, spawnSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { imageDeviceSettings, startEnrolmentHubFleet, statusSamplesReceived } from '../helpers/enrolment-hub-fleet.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';
import { blobExecArgv } from '../../scripts/build-sea.js';
import { TARGETS } from '../../scripts/package-targets.js';
import { REQUIRE_BINARIES, builtBinaries, type BuiltBinary } from './binaries.js';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
// Under emulation a start takes seconds, not milliseconds.
const SLOW = 120_000;
const cleanEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent' };

function run(binary: BuiltBinary, args: string[]) {
  const [command, argv] = binary.command(args);
  const result = spawnSync(command, argv, { env: cleanEnv, encoding: 'utf8', timeout: SLOW });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs the agent until `until` resolves, then stops it with SIGTERM; returns its exit code and output. */
async function runAgent(command: [string, string[]], until: () => Promise<void>) {
  const child = spawn(command[0], command[1], { env: cleanEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await Promise.race([until(), exited.then((code) => Promise.reject(new Error(`agent exited early (${code}):\n${output}`)))]);
  } finally {
    child.kill('SIGTERM');
  }
  return { code: await exited, output };
}

function messagesOn(client: MqttClient, topic: string): Promise<() => { topic: string; payload: Record<string, unknown> }[]> {
  const seen: { topic: string; payload: Record<string, unknown> }[] = [];
  client.on('message', (t, payload) => seen.push({ topic: t, payload: JSON.parse(payload.toString()) as Record<string, unknown> }));
  return client.subscribeAsync(topic, { qos: 1 }).then(() => () => seen);
}

for (const binary of builtBinaries()) {
  describe.skipIf(!binary.present && !REQUIRE_BINARIES)(`single binary ${binary.arch}`, { timeout: SLOW }, () => {
    let broker: TestBroker;
    let client: MqttClient;
    const { dir, cleanup } = tempDir(`fleetlet-e2e-${binary.arch}-`);

    beforeAll(async () => {
      expect(binary.present, `${binary.path} was not built (npm run package)`).toBe(true);
      broker = await startMosquitto();
      client = await connectAsync(broker.url, { clientId: `e2e-observer-${binary.arch}-${process.pid}` });
    });
    afterAll(async () => {
      await client?.endAsync();
      await broker?.close();
      cleanup();
    });

    it('prints its version', () => {
      const result = run(binary, ['--version']);
      expect(result).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    });

    it('starts with the V8 flags of packaging/sea-config.json where its runtime reads them from the blob', () => {
      // A preload (NODE_OPTIONS, which a single binary reads too) prints what the process started with.
      const preload = join(dir, 'print-exec-argv.cjs');
      writeFileSync(preload, 'console.log(JSON.stringify(process.execArgv));\n');
      const [command, argv] = binary.command(['--version']);
      const result = spawnSync(command, argv, { env: { ...cleanEnv, NODE_OPTIONS: `--require ${preload}` }, encoding: 'utf8', timeout: SLOW });
      const flags = blobExecArgv(TARGETS[binary.arch].runtime.version);
      // The armv7 runtime (20.11) cannot read flags from its blob; the others start with the config's.
      expect(flags.length > 0).toBe(binary.arch !== 'armv7');
      expect(result.stdout).toBe(`${JSON.stringify(flags)}\n${VERSION}\n`);
    });

    it('checks a config file: a good one passes, a bad one exits 78 naming the key', () => {
      const good = writeAgentConfig(join(dir, 'good'));
      expect(run(binary, ['config', 'check', good])).toMatchObject({ code: 0 });
      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, 'broker:\n  url: http://example.invalid\n');
      const result = run(binary, ['config', 'check', bad]);
      expect(result.code).toBe(78);
      expect(result.stderr).toContain('broker.url');
    });

    it('runs the agent: queues status samples while offline, drains them on connect, publishes presence, stops on SIGTERM', async () => {
      const deviceId = `e2e-${binary.arch}`;
      // The broker is unreachable at first: samples taken meanwhile can only arrive through the outbox.
      const proxy = await FaultProxy.start(broker.port);
      proxy.refuse();
      const config = writeAgentConfig(join(dir, 'agent'), {
        device: { id: deviceId },
        broker: { url: proxy.url, allowPlaintext: true, reconnect: { baseMs: 200, capMs: 1000 } },
        telemetry: { intervalSeconds: 5, http: { enabled: false } },
      });
      const seen = await messagesOn(client, `fleetlet/v1/devices/${deviceId}/#`);
      const presence = () => seen().filter((m) => m.topic.endsWith('/presence')).map((m) => m.payload.state);
      const sampledAt = () => seen().filter((m) => m.topic.endsWith('/status')).map((m) => Date.parse(String(m.payload.sampledAt)));
      let healedAt = 0;
      try {
        const { code, output } = await runAgent(binary.command(['agent', '--config', config]), async () => {
          await waitFor(() => proxy.accepted >= 2, 'the agent to try the broker twice', SLOW / 2);
          await new Promise((resolve) => setTimeout(resolve, 6000));
          healedAt = Date.now();
          proxy.heal();
          await waitFor(() => presence().includes('online'), 'presence online', SLOW / 2);
          await waitFor(() => sampledAt().some((at) => at < healedAt), 'a status sample taken while offline', SLOW / 2);
        });
        expect(code, output).toBe(0);
        // Node 24 warns at runtime about url.parse(), which MQTT.js uses for a URL string: the agent must give none.
        expect(output).not.toContain('DeprecationWarning');
      } finally {
        await proxy.close();
      }
      expect(sampledAt().filter((at) => at < healedAt).length).toBeGreaterThan(0);
      const stateDir = join(dir, 'agent', 'state');
      expect(readdirSync(stateDir)).toContain('fleetlet.db');
      const [addon] = readdirSync(join(stateDir, 'native'));
      expect(addon).toMatch(/^better_sqlite3-[0-9a-f]{16}\.node$/);
      expect(statSync(join(stateDir, 'native', addon!)).mode & 0o777).toBe(0o500);
    });

    it('runs on a read-only root: the addon goes to the writable state dir', async () => {
      const deviceId = `ro-${binary.arch}`;
      const config = writeAgentConfig(join(dir, 'ro'), {
        device: { id: deviceId },
        broker: { url: broker.url, allowPlaintext: true },
      });
      const stateDir = join(dir, 'ro', 'state');
      mkdirSync(stateDir, { recursive: true });
      const seen = await messagesOn(client, `fleetlet/v1/devices/${deviceId}/presence`);
      const [command, args] = binary.command(['agent', '--config', config]);
      // A private mount namespace: a fresh tmpfs for the state, then everything else read-only.
      const readOnlyRoot: [string, string[]] = [
        'unshare',
        ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs tmpfs "$0" && mount -o remount,bind,ro / && exec "$@"`, stateDir, command, ...args],
      ];
      const { code, output } = await runAgent(readOnlyRoot, () =>
        waitFor(() => seen().some((m) => m.payload.state === 'online'), 'presence online from a read-only root', SLOW / 2),
      );
      expect(code, output).toBe(0);
      expect(output).not.toContain('cannot load the embedded');
    });

    // The hub runs in the cloud on amd64; the arm binaries carry it too, but under emulation it would take minutes,
    // so this case exists for x64 only (it is not a skipped test elsewhere).
    if (binary.arch === 'x64') {
      it('enrols with only a bootstrap token against `hub` run from the same binary, and reports through mosquitto with its own certificate', async () => {
        // Its own temp dir: mosquitto, started as root, drops to its own user, which must reach the broker's files.
        const { dir: fleetDir, cleanup: cleanupFleet } = tempDir(`fleetlet-e2e-enrol-${binary.arch}-`);
        const fleet = await startEnrolmentHubFleet(fleetDir, { command: (args) => binary.command(args), certificateDays: 1 });
        try {
          const deviceDir = join(fleetDir, 'device');
          mkdirSync(join(deviceDir, 'root/etc'), { recursive: true });
          writeFileSync(join(deviceDir, 'root/etc/machine-id'), `${randomBytes(16).toString('hex')}\n`);
          const tokenFile = join(deviceDir, 'bootstrap-token');
          writeFileSync(tokenFile, `${fleet.createToken('smoke', 1, '--auto-approve')}\n`, { mode: 0o600 });
          const config = writeAgentConfig(deviceDir, imageDeviceSettings(fleet, join(deviceDir, 'root'), tokenFile));
          const certFile = join(deviceDir, 'state/enrolment/current/device.pem');
          const deviceId = () => new X509Certificate(readFileSync(certFile)).subject.replace(/^CN=/, '');
          const { code, output } = await runAgent(binary.command(['agent', '--config', config]), async () => {
            await waitFor(() => existsSync(certFile), 'a certificate from the hub', SLOW / 2);
            await waitFor(() => statusSamplesReceived(fleet, deviceId()) > 0, 'a status sample in the hub, sent with that certificate', SLOW / 2);
          });
          expect(code, output).toBe(0);
          const cert = new X509Certificate(readFileSync(certFile));
          expect(cert.checkIssued(new X509Certificate(fleet.fleetCaPem))).toBe(true);
          expect(output).toContain('certificate issued');
        } finally {
          await fleet.close();
          cleanupFleet();
        }
      });
    }
  });
}
