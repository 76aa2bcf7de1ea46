import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GUARD_FILE, GUARD_SCRIPT } from '../../src/commands/agent-upgrade-guard.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { waitFor } from '../helpers/cli.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, REPO_ROOT, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';

const RESULTS = 'fleetlet/v1/devices/test-device/results';
const PRESENCE = 'fleetlet/v1/devices/test-device/presence';
const operator = testKey('ops');
const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * What systemd does for the unit: before every start run the guard (ExecStartPre), then the binary; on exit,
 * start again (Restart=always). Bounded, so a broken binary cannot loop forever.
 */
class ServiceManager {
  starts = 0;
  output = '';
  private child: ChildProcess | undefined;
  private stopped = false;

  constructor(
    private readonly binary: string,
    private readonly config: string,
    private readonly stateDir: string,
    /** False: a unit without the guard's ExecStartPre line. */
    private readonly runsGuard = true,
    private readonly maxStarts = 6,
  ) {}

  start(): void {
    if (this.stopped || this.starts >= this.maxStarts) return;
    // systemd gives the ExecStartPre and the main process of one start the same INVOCATION_ID.
    const invocation = { INVOCATION_ID: randomBytes(16).toString('hex') };
    const guard = join(this.stateDir, 'upgrade-guard.sh');
    if (this.runsGuard && existsSync(guard)) {
      const ran = spawnSync('/bin/sh', [guard, join(this.stateDir, 'agent-upgrade.state')], { encoding: 'utf8', timeout: 10_000, env: invocation });
      this.output += ran.stdout + ran.stderr;
    }
    this.starts += 1;
    const child = spawn(this.binary, ['agent', '--config', this.config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, NODE_PATH: join(REPO_ROOT, 'node_modules'), ...invocation },
    });
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.once('exit', () => setTimeout(() => this.start(), 200));
    this.child = child;
  }

  /** A power cut for the agent: SIGKILL, then the manager starts it again as systemd would. */
  kill(): void {
    this.child?.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await gone;
  }
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(newBinary: Buffer, options: { runsGuard?: boolean } = {}) {
  const { dir, cleanup } = tempDir('fleetlet-selfupdate-');
  cleanups.push(cleanup);
  const broker = await startMosquitto();
  cleanups.push(() => broker.close());
  const port = await freePort();
  const server: Server = createServer((req, res) => {
    if (req.url === '/fleetlet-new') res.writeHead(200, { 'content-length': newBinary.length }).end(newBinary);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const binary = join(dir, 'bin', 'fleetlet');
  mkdirSync(dirname(binary), { recursive: true });
  copyFileSync(FLEETLET_BUNDLE, binary);
  chmodSync(binary, 0o755);
  const stateDir = join(dir, 'state');
  const config = writeAgentConfig(dir, {
    broker: { url: broker.url, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
    commands: {
      trustedKeys: [{ id: operator.id, publicKey: operator.publicBase64 }],
      agentUpgrade: { binaryPath: binary, confirmTimeoutSeconds: 10 },
    },
  });
  const fleet = await Observer.connect(broker.url, [RESULTS, PRESENCE]);
  cleanups.push(() => fleet.client.endAsync());
  // Installed with the device, as provisioning does, so that the very first start already runs it.
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(stateDir, GUARD_FILE), GUARD_SCRIPT, { mode: 0o700 });
  const service = new ServiceManager(binary, config, stateDir, options.runsGuard ?? true);
  cleanups.push(() => service.stop());
  service.start();
  await waitFor(() => fleet.messages.some((m) => m.topic === PRESENCE && (m.json as { state: string }).state === 'online'), 'the agent online', 20_000);
  const upgrade = (bytes: Buffer, artifactSha = sha(bytes)) =>
    signedCommand(operator, {
      type: 'agent.upgrade',
      target: { device: 'test-device' },
      args: { version: '0.1.1', artifactUrl: `http://127.0.0.1:${port}/fleetlet-new`, sha256: artifactSha },
    });
  const final = (id: string) =>
    fleet.waitFor((m) => {
      const r = m.json as CommandResult;
      return m.topic === RESULTS && r.commandId === id && ['succeeded', 'failed', 'rejected'].includes(r.status);
    }, 'the final result', 60_000);
  return { binary, stateDir, fleet, service, upgrade, final, oldSha: sha(readFileSync(binary)) };
}

describe('agent self-update', () => {
  it('swaps in a healthy new binary, which confirms itself after the restart', async () => {
    const newBinary = Buffer.concat([readFileSync(FLEETLET_BUNDLE), Buffer.from('\n// build 0.1.1\n')]);
    const device = await setup(newBinary);
    const command = device.upgrade(newBinary);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const result = await device.final(command.id);
    expect(result.json, device.service.output).toMatchObject({ status: 'succeeded', detail: 'fleetlet 0.1.0 -> 0.1.1, confirmed healthy' });
    expect(sha(readFileSync(device.binary))).toBe(sha(newBinary));
    expect(sha(readFileSync(`${device.binary}.previous`))).toBe(device.oldSha);
    expect(readFileSync(join(device.stateDir, 'agent-upgrade.state'), 'utf8')).toMatch(/^state=confirmed$/m);
    expect(device.service.starts).toBe(2);
  });

  it('reverts a new binary that crashes at start, without its help, and the old binary reports it', async () => {
    const broken = Buffer.from('#!/bin/sh\necho "simulated broken build" >&2\nexit 1\n');
    const device = await setup(broken);
    const command = device.upgrade(broken);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const result = await device.final(command.id);
    expect(result.json, device.service.output).toMatchObject({ status: 'failed', reason: 'reverted' });
    expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    expect(device.service.output).toContain('simulated broken build');
    expect(device.service.output).toContain('previous binary restored');
    expect(device.service.starts).toBe(3);
  });

  it('a new binary that runs but never gets healthy restores the previous one itself before the deadline', async () => {
    // The real agent, started with a broker address it cannot reach: alive, but never connected.
    const unreachable = Buffer.from(
      `#!/bin/sh\nFLEETLET_BROKER_URL=mqtt://127.0.0.1:1 exec ${JSON.stringify(process.execPath)} ${JSON.stringify(FLEETLET_BUNDLE)} "$@"\n`,
    );
    const device = await setup(unreachable);
    const command = device.upgrade(unreachable);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const result = await device.final(command.id);
    expect(result.json, device.service.output).toMatchObject({ status: 'failed', reason: 'reverted' });
    expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    expect(device.service.output).toContain('did not become healthy in time');
    expect(device.service.output).not.toContain('previous binary restored');
    expect(device.service.starts).toBe(3);
  }, 60_000);

  it.each(['download', 'swap', 'restarting'])('SIGKILL as the %s step is reported: the device still ends on a working binary and reports once', async (step) => {
    const newBinary = Buffer.concat([readFileSync(FLEETLET_BUNDLE), Buffer.from(`\n// build killed at ${step}\n`)]);
    const device = await setup(newBinary);
    const command = device.upgrade(newBinary);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    await device.fleet.waitFor((m) => {
      const r = m.json as CommandResult;
      return r.commandId === command.id && r.status === 'progress' && r.step === step;
    }, `the ${step} progress`);
    device.service.kill();
    const result = await device.final(command.id);
    const finals = device.fleet.messages.filter((m) => {
      const r = m.json as CommandResult;
      return m.topic === RESULTS && r.commandId === command.id && ['succeeded', 'failed'].includes(r.status);
    });
    expect(finals).toHaveLength(1);
    // Either outcome is safe; what must hold is that the binary in place matches what was reported.
    const installed = sha(readFileSync(device.binary));
    if ((result.json as CommandResult).status === 'succeeded') expect(installed).toBe(sha(newBinary));
    else expect([device.oldSha, sha(newBinary)]).toContain(installed);
    await waitFor(
      () => device.fleet.messages.filter((m) => m.topic === PRESENCE && (m.json as { state: string }).state === 'online').length >= 2,
      'the agent back online',
      30_000,
    );
  }, 90_000);

  it('refuses to self-update when the service does not run the revert guard', async () => {
    const newBinary = Buffer.concat([readFileSync(FLEETLET_BUNDLE), Buffer.from('\n// unguarded\n')]);
    const device = await setup(newBinary, { runsGuard: false });
    const command = device.upgrade(newBinary);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const result = await device.final(command.id);
    expect(result.json).toMatchObject({ status: 'failed', reason: 'no_revert_guard', detail: expect.stringContaining('ExecStartPre=-/bin/sh') });
    expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    expect(device.service.starts).toBe(1);
  });

  it('refuses an artifact whose sha256 does not match, changing nothing', async () => {
    const newBinary = Buffer.concat([readFileSync(FLEETLET_BUNDLE), Buffer.from('\n// tampered\n')]);
    const device = await setup(newBinary);
    const command = device.upgrade(newBinary, 'b'.repeat(64));
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const result = await device.final(command.id);
    expect(result.json).toMatchObject({ status: 'failed', reason: 'download_failed' });
    expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    expect(existsSync(`${device.binary}.previous`)).toBe(false);
    expect(device.service.starts).toBe(1);
  });
});
