import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { GUARD_FILE, GUARD_SCRIPT, TrialMarkerSchema, type TrialMarker } from '../../src/commands/agent-upgrade-guard.js';
import type { CommandResult } from '../../src/protocol/result.js';
import BetterSqlite3 from 'better-sqlite3';
import { LATEST_SCHEMA_VERSION } from '../../src/store/migrations.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { BROKEN_SAMPLER, bundleVariant, EXTRA_MIGRATION, type SourcePatch } from '../helpers/agent-variant.js';
import { waitFor } from '../helpers/wait.js';
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

  /**
   * A power cut for the agent: SIGKILL, then the manager starts it again as systemd would. Resolves with the trial
   * marker as the killed process left it (read before the next start and its guard run), which decides the outcome.
   */
  kill(): Promise<TrialMarker | undefined> {
    const child = this.child!;
    // At the restarting step the agent stops itself for the new binary: on a busy machine it may be gone before the
    // kill. The marker as it left it decides then, as it would after a power cut at that instant.
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(readMarkerNow(this.stateDir));
    const marker = new Promise<TrialMarker | undefined>((resolve) => child.once('exit', () => resolve(readMarkerNow(this.stateDir))));
    child.kill('SIGKILL');
    return marker;
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

function readMarkerNow(stateDir: string): TrialMarker | undefined {
  const file = join(stateDir, 'agent-upgrade.state');
  if (!existsSync(file)) return undefined;
  const lines = readFileSync(file, 'utf8').split('\n').filter((line) => line.includes('='));
  return TrialMarkerSchema.parse(Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)])));
}

function schemaVersion(file: string): number {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    return db.prepare('SELECT MAX(version) FROM schema_version').pluck().get() as number;
  } finally {
    db.close();
  }
}

const onlineCount = (fleet: Observer) => fleet.messages.filter((m) => m.topic === PRESENCE && (m.json as { state: string }).state === 'online').length;

/** Another build of the agent (see bundleVariant), in a directory removed after the test. */
async function variantBundle(patches: SourcePatch[]): Promise<string> {
  const { dir, cleanup } = tempDir('fleetlet-variant-');
  onTestFinished(cleanup);
  const file = join(dir, 'fleetlet-variant.cjs');
  await bundleVariant('src/bin.ts', file, patches);
  return file;
}

async function setup(newBinary: Buffer, options: { runsGuard?: boolean } = {}) {
  const { dir, cleanup } = tempDir('fleetlet-selfupdate-');
  onTestFinished(cleanup);
  const broker = await startMosquitto();
  onTestFinished(() => broker.close());
  const port = await freePort();
  const server: Server = createServer((req, res) => {
    if (req.url === '/fleetlet-new') res.writeHead(200, { 'content-length': newBinary.length }).end(newBinary);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));

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
  onTestFinished(() => fleet.client.endAsync());
  // Installed with the device, as provisioning does, so that the very first start already runs it.
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(stateDir, GUARD_FILE), GUARD_SCRIPT, { mode: 0o700 });
  const service = new ServiceManager(binary, config, stateDir, options.runsGuard ?? true);
  onTestFinished(() => service.stop());
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

  it.each(['download', 'swap', 'restarting'])('SIGKILL as the %s step is reported: the device ends on the binary the trial state decides and reports once', async (step) => {
    const newBinary = Buffer.concat([readFileSync(FLEETLET_BUNDLE), Buffer.from(`\n// build killed at ${step}\n`)]);
    const device = await setup(newBinary);
    const command = device.upgrade(newBinary);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    await device.fleet.waitFor((m) => {
      const r = m.json as CommandResult;
      return r.commandId === command.id && r.status === 'progress' && r.step === step;
    }, `the ${step} progress`);
    const marker = await device.service.kill();
    // The guard's rule: a trial whose one start was used (attempts >= 1) and not confirmed is reverted; before that
    // (no trial yet, or the new binary not started yet) the resumed upgrade goes on and the healthy build confirms.
    const ours = marker?.commandId === command.id;
    const reverted = ours && (marker.state === 'reverted' || (marker.state === 'trial' && marker.attempts >= 1));
    const result = await device.final(command.id);
    const finals = device.fleet.messages.filter((m) => {
      const r = m.json as CommandResult;
      return m.topic === RESULTS && r.commandId === command.id && ['succeeded', 'failed'].includes(r.status);
    });
    expect(finals).toHaveLength(1);
    if (reverted) {
      expect(result.json, device.service.output).toMatchObject({ status: 'failed', reason: 'reverted' });
      expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    } else {
      expect(result.json, device.service.output).toMatchObject({ status: 'succeeded' });
      expect(sha(readFileSync(device.binary))).toBe(sha(newBinary));
    }
    await waitFor(
      () => device.fleet.messages.filter((m) => m.topic === PRESENCE && (m.json as { state: string }).state === 'online').length >= 2,
      'the agent back online',
      30_000,
    );
  }, 90_000);

  it('a failed trial that migrated the database: the old binary restores its snapshot, comes back online and reports failed with the reason', async () => {
    // A newer build with one more migration, which runs but never reaches the broker.
    const variant = await variantBundle([EXTRA_MIGRATION]);
    const unreachable = Buffer.from(`#!/bin/sh\nFLEETLET_BROKER_URL=mqtt://127.0.0.1:1 exec ${JSON.stringify(process.execPath)} ${JSON.stringify(variant)} "$@"\n`);
    const device = await setup(unreachable);
    const command = device.upgrade(unreachable);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const result = await device.final(command.id);
    expect(result.json, device.service.output).toMatchObject({
      status: 'failed',
      reason: 'reverted',
      detail: expect.stringMatching(/not shown healthy: link\b.*0\.1\.0 was restored, with the state database from before the upgrade/),
    });
    expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    expect(device.service.output).toContain('state database restored from the snapshot');
    // The old binary runs on its own schema again; the migrated database is kept aside.
    expect(schemaVersion(join(device.stateDir, 'fleetlet.db'))).toBe(LATEST_SCHEMA_VERSION);
    expect(schemaVersion(join(device.stateDir, 'fleetlet.db.reverted'))).toBe(LATEST_SCHEMA_VERSION + 1);
    // Its journal still knows the command: a replay is refused.
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const replay = await device.fleet.waitFor(
      (m) => m.topic === RESULTS && (m.json as CommandResult).commandId === command.id && (m.json as CommandResult).status === 'rejected',
      'the replay refused',
    );
    expect(replay.json).toMatchObject({ reason: 'replayed' });
    expect(device.service.starts).toBe(3);
  }, 90_000);

  it('a new build that connects but never samples telemetry is reverted, and a command it accepted on trial stays journaled', async () => {
    const variant = await variantBundle([EXTRA_MIGRATION, BROKEN_SAMPLER]);
    const newBinary = readFileSync(variant);
    const device = await setup(newBinary);
    const command = device.upgrade(newBinary);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    await waitFor(() => onlineCount(device.fleet) >= 2, 'the new build online', 30_000);
    // Accepted (journaled) by the build on trial; it waits behind the upgrade, so the old binary resumes it.
    const ping = signedCommand(operator, { type: 'ping', target: { device: 'test-device' } });
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(ping), { qos: 1 });
    const accepted = await device.fleet.waitFor(
      (m) => m.topic === RESULTS && (m.json as CommandResult).commandId === ping.id && (m.json as CommandResult).status === 'accepted',
      'the ping accepted',
    );
    const result = await device.final(command.id);
    expect(device.fleet.messages.indexOf(accepted)).toBeLessThan(device.fleet.messages.indexOf(result));
    expect((await device.final(ping.id)).json).toMatchObject({ status: 'succeeded' });
    expect(result.json, device.service.output).toMatchObject({
      status: 'failed',
      reason: 'reverted',
      detail: expect.stringContaining('not shown healthy: telemetry)'),
    });
    expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(ping), { qos: 1 });
    const replay = await device.fleet.waitFor(
      (m) => m.topic === RESULTS && (m.json as CommandResult).commandId === ping.id && (m.json as CommandResult).status === 'rejected',
      'the replayed ping refused',
    );
    expect(replay.json).toMatchObject({ reason: 'replayed' });
  }, 90_000);

  it('a new build whose command path is broken is reverted, not confirmed', async () => {
    // Connected and sampling, but with no operator key it could never verify a command again.
    const noTrust = Buffer.from(
      `#!/bin/sh\nFLEETLET_COMMANDS_TRUSTED_KEYS='[]' exec ${JSON.stringify(process.execPath)} ${JSON.stringify(FLEETLET_BUNDLE)} "$@"\n`,
    );
    const device = await setup(noTrust);
    const command = device.upgrade(noTrust);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const result = await device.final(command.id);
    expect(result.json, device.service.output).toMatchObject({
      status: 'failed',
      reason: 'reverted',
      detail: expect.stringContaining('not shown healthy: commands)'),
    });
    expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    expect(readFileSync(join(device.stateDir, 'agent-upgrade.state'), 'utf8')).toMatch(/^state=reverted$/m);
  }, 90_000);

  it('a build on trial does not rewrite the revert guard: one that ships a broken guard and crashes is still reverted', async () => {
    const variant = await variantBundle([{ file: 'src/commands/agent-upgrade-guard.ts', find: '[ "$(value state)" = "trial" ] || exit 0', replace: 'exit 0' }]);
    // Runs until its commands part has started (the guard would have been written by then), then dies as in a crash.
    const crashing = Buffer.from(`#!/bin/sh
log="$(mktemp)"
FLEETLET_BROKER_URL=mqtt://127.0.0.1:1 ${JSON.stringify(process.execPath)} ${JSON.stringify(variant)} "$@" > "$log" 2>&1 &
pid=$!
i=0
while [ $i -lt 200 ] && ! grep -q 'resumed or reported failed' "$log"; do sleep 0.1; i=$((i + 1)); done
kill -9 $pid
cat "$log"; rm -f "$log"
echo "simulated crash after the commands part started" >&2
exit 1
`);
    const device = await setup(crashing);
    const command = device.upgrade(crashing);
    await device.fleet.client.publishAsync('fleetlet/v1/devices/test-device/commands', encode(command), { qos: 1 });
    const result = await device.final(command.id);
    expect(device.service.output).toContain('simulated crash after the commands part started');
    expect(result.json, device.service.output).toMatchObject({ status: 'failed', reason: 'reverted', detail: expect.stringContaining('it stopped before it could') });
    expect(sha(readFileSync(device.binary))).toBe(device.oldSha);
    expect(readFileSync(join(device.stateDir, GUARD_FILE), 'utf8')).toBe(GUARD_SCRIPT);
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
