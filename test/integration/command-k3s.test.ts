import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { k3sConfigureHandler } from '../../src/commands/k3s-configure.js';
import { k3sRestartHandler } from '../../src/commands/k3s-restart.js';
import { CHUNK_BYTES, logsCollectHandler } from '../../src/commands/logs-collect.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';
import { k3sStopHandler } from '../../src/commands/k3s-stop.js';
import { SupervisedK3sControl } from '../../src/k3s/control.js';
import { K3sInstaller } from '../../src/k3s/installer.js';
import { NodeSettingsFile, withNodeSettings } from '../../src/k3s/node-settings.js';
import { buildAgentInvocation } from '../../src/k3s/args.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { FileSealKey } from '../../src/identity/seal-key.js';
import { sealPublicKeyFromBase64, sealSecret } from '../../src/protocol/sealed-secret.js';
import type { CommandTarget } from '../../src/protocol/command.js';
import { isAlive, JOIN_TOKEN, shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';

const operator = testKey('ops');
const TOKEN = 'K10rotated-secret-token::node:abcdef';
/** Long enough for the fake to start on a loaded machine; a change that never gets healthy waits all of it. */
const HEALTH_TIMEOUT_MS = 10_000;

/**
 * The real supervisor, installer and node settings file over the fake k3s, which starts from the settings the
 * commands write (as the agent's k3s part starts it): what a command did is seen in the settings file and in k3s.
 */
describe('k3s.configure with sealed tokens, and logs.collect, on a running (fake) k3s', () => {
  let dir: { dir: string; cleanup: () => void };
  let fake: SupervisedFake;
  let settings: NodeSettingsFile;
  let k3s: SupervisedK3sControl;
  let rig: RouterRig;
  let deviceKey: FileSealKey;
  let otherDeviceKey: FileSealKey;
  const agentLines = Array.from({ length: 300 }, (_, i) => `agent line ${i} ${'x'.repeat(i % 7 === 0 ? 3000 : 40)}`);

  beforeEach(async () => {
    dir = tempDir('fleetlet-k3s-commands-');
    settings = new NodeSettingsFile(join(dir.dir, 'work', 'node-settings.json'));
    const configured = ConfigSchema.parse({
      broker: { url: 'mqtts://broker.example:8883' },
      k3s: { serverUrl: 'https://10.0.0.1:6443', token: JOIN_TOKEN, dataDir: join(dir.dir, 'data'), nodeName: 'pi-01' },
    }).k3s;
    // No client load balancer: no port to find for it.
    fake = await supervisedFake(dir.dir, {}, { invocation: () => buildAgentInvocation({ ...withNodeSettings(configured, settings.load()), disableApiserverLb: true }) });
    const installer = new K3sInstaller({ binaryPath: FAKE_K3S, arch: 'amd64', artifactUrl: 'http://127.0.0.1:1', channel: 'stable', channelUrl: 'http://127.0.0.1:1' });
    k3s = new SupervisedK3sControl(fake.supervisor, installer, settings, FAKE_K3S, 50);
    await fake.supervisor.start();
    await waitFor(() => fake.supervisor.status().state === 'running-healthy', 'k3s healthy', 30_000);
    mkdirSync(join(dir.dir, 'state'));
    mkdirSync(join(dir.dir, 'other-device'));
    deviceKey = (await FileSealKey.loadOrCreate(join(dir.dir, 'state'))).key;
    otherDeviceKey = (await FileSealKey.loadOrCreate(join(dir.dir, 'other-device'))).key;
    rig = routerRig({
      stateDir: join(dir.dir, 'state'),
      operator,
      handlers: [
        k3sRestartHandler(k3s, HEALTH_TIMEOUT_MS),
        k3sConfigureHandler(k3s, HEALTH_TIMEOUT_MS, deviceKey),
        logsCollectHandler({ agent: async (max) => agentLines.slice(-max), k3s: (max) => k3s.recentLogLines(max) }),
      ],
    });
  });
  afterEach(async () => {
    rig.close();
    await shutDown(fake);
    dir.cleanup();
  });

  const run = async (
    type: 'k3s.restart' | 'k3s.configure' | 'logs.collect',
    args: Record<string, unknown> = {},
    seal?: { token: string; to: FileSealKey; forDevice?: string; target?: CommandTarget },
  ) => {
    const id = `cmd-${Math.random().toString(16).slice(2, 14)}`;
    const sealed = seal
      ? {
          joinToken: sealSecret(seal.token, sealPublicKeyFromBase64(seal.to.publicKey), {
            commandId: id,
            type,
            arg: 'joinToken',
            deviceId: seal.forDevice ?? 'dev-1',
          }),
        }
      : {};
    const envelope = signedCommand(operator, { id, type, args: { ...args, ...sealed }, ...(seal?.target ? { target: seal.target } : {}) });
    rig.router.receive(encode(envelope));
    await rig.router.idle();
    return rig.outbox.results().filter((r) => r.commandId === envelope.id);
  };

  it('k3s.configure applies labels and a sealed rotated token with a restart, and never echoes the token', async () => {
    const results = await run('k3s.configure', { labels: { zone: 'north' } }, { token: TOKEN, to: deviceKey });
    expect(results.at(-1)).toMatchObject({ status: 'succeeded' });
    expect(settings.load()).toEqual({ labels: { zone: 'north' }, joinToken: TOKEN });
    // The k3s running now started with them (the fake records what each start received, never the token itself).
    const started = JSON.parse(readFileSync(join(dir.dir, `${fake.supervisor.status().pid}.json`), 'utf8')) as { argv: string[]; tokenLength: number };
    expect(started.argv.join(' ')).toContain('zone=north');
    expect(started.tokenLength).toBe(TOKEN.length);
    expect(JSON.stringify(rig.outbox.records)).not.toContain(TOKEN);
    expect(JSON.stringify(rig.journal.get(results[0]!.commandId!)?.command)).not.toContain(TOKEN);
  });

  it('k3s.configure refuses a plaintext joinToken before running anything', async () => {
    const results = await run('k3s.configure', { labels: { zone: 'north' }, joinToken: TOKEN });
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'rejected', reason: 'bad_args', detail: expect.stringContaining('args.joinToken') });
    expect(settings.load()).toEqual({});
    expect(JSON.stringify(rig.outbox.records)).not.toContain(TOKEN);
  });

  it('k3s.configure with a token sealed to another device fails without changing anything', async () => {
    const results = await run('k3s.configure', { labels: { zone: 'north' } }, { token: TOKEN, to: otherDeviceKey });
    expect(results.at(-1)).toMatchObject({ status: 'failed', reason: 'sealed_secret', detail: expect.stringContaining('nothing was changed') });
    expect(settings.load()).toEqual({});
  });

  it('k3s.configure with a token sealed to this device but for another device id fails (the device id is bound)', async () => {
    const results = await run('k3s.configure', {}, { token: TOKEN, to: deviceKey, forDevice: 'dev-2' });
    expect(results.at(-1)).toMatchObject({ status: 'failed', reason: 'sealed_secret' });
    expect(settings.load()).toEqual({});
  });

  it('k3s.configure carrying a sealed token to a group is refused', async () => {
    const results = await run('k3s.configure', {}, { token: TOKEN, to: deviceKey, target: { group: 'canary' } });
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'rejected', reason: 'bad_args', detail: expect.stringContaining('not to a group') });
    expect(settings.load()).toEqual({});
  });

  it('k3s.configure puts the previous settings back when k3s is not healthy with the new ones', async () => {
    await run('k3s.configure', { labels: { zone: 'north' } });
    // The fake k3s, like a real one, never gets past a server that does not resolve.
    const results = await run('k3s.configure', { serverUrl: 'https://unreachable.invalid:6443' }, { token: TOKEN, to: deviceKey });
    expect(results.at(-1)).toMatchObject({
      status: 'failed',
      reason: 'rolled_back',
      detail: expect.stringContaining('previous settings restored and healthy'),
    });
    expect(settings.load()).toEqual({ labels: { zone: 'north' } });
    expect(await k3s.waitHealthy(HEALTH_TIMEOUT_MS, new AbortController().signal)).toEqual({ healthy: true });
    expect(JSON.stringify(rig.outbox.records)).not.toContain(TOKEN);
  }, 60_000);

  it('logs.collect sends bounded lines in chunks that each fit one message', async () => {
    const results = await run('logs.collect', { lines: 250 });
    const chunks = results.filter((r) => r.status === 'progress' && r.step === 'logs');
    const lines = chunks.flatMap((r) => (r.status === 'progress' ? ((r.data?.lines as string[]) ?? []) : []));
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) expect(Buffer.byteLength(JSON.stringify(chunk))).toBeLessThan(CHUNK_BYTES + 4096);
    expect(lines.filter((l) => l.startsWith('agent line'))).toHaveLength(250);
    expect(lines.some((l) => l.includes('Starting k3s agent v')), lines.filter((l) => !l.startsWith('agent line')).slice(0, 8).join('\n')).toBe(true);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(2051);
    expect(results.at(-1)).toMatchObject({ status: 'succeeded', data: { chunks: chunks.length } });
    expect(readFileSync(fake.supervisor.logFile, 'utf8')).toContain('Starting k3s agent');
  });
});

/** The real supervisor over the fake k3s: what these commands do to k3s is seen in its processes and its log. */
describe('k3s.restart and k3s.stop on the supervised (fake) k3s', () => {
  let dir: { dir: string; cleanup: () => void };
  let fake: SupervisedFake;
  let rig: RouterRig;

  beforeEach(async () => {
    dir = tempDir('fleetlet-k3s-commands-supervised-');
    fake = await supervisedFake(dir.dir);
    const installer = new K3sInstaller({ binaryPath: FAKE_K3S, arch: 'amd64', artifactUrl: 'http://127.0.0.1:1', channel: 'stable', channelUrl: 'http://127.0.0.1:1' });
    const k3s = new SupervisedK3sControl(fake.supervisor, installer, new NodeSettingsFile(join(dir.dir, 'settings.json')), FAKE_K3S, 50);
    rig = routerRig({ stateDir: join(dir.dir, 'state'), operator, handlers: [k3sRestartHandler(k3s, 10_000), k3sStopHandler(k3s)] });
    await fake.supervisor.start();
    await waitFor(() => fake.supervisor.status().state === 'running-healthy', 'k3s healthy', 30_000);
  });
  afterEach(async () => {
    rig.close();
    await shutDown(fake);
    dir.cleanup();
  });

  const run = async (type: 'k3s.restart' | 'k3s.stop') => {
    const envelope = signedCommand(operator, { type });
    rig.router.receive(encode(envelope));
    await rig.router.idle();
    return rig.outbox.results().filter((r) => r.commandId === envelope.id);
  };
  /** The fake k3s records every start in a file named after its pid. */
  const starts = () => readdirSync(dir.dir).filter((name) => /^\d+\.json$/.test(name)).length;
  const log = () => readFileSync(fake.supervisor.logFile, 'utf8');

  it('k3s.restart restarts k3s once, with one SIGTERM, and waits for it to be healthy', async () => {
    const before = fake.supervisor.status().pid!;
    const results = await run('k3s.restart');
    expect(results.at(-1)).toMatchObject({ status: 'succeeded', detail: 'k3s restarted and healthy' });
    expect(isAlive(before)).toBe(false);
    expect(starts()).toBe(2);
    expect(fake.supervisor.status()).toMatchObject({ state: 'running-healthy', restarts: 1 });
    expect(fake.kinds().filter((kind) => kind === 'k3s.up')).toHaveLength(2);
    expect(log()).not.toContain('Second shutdown signal');
  });

  it('k3s.stop stops k3s with one SIGTERM and keeps it stopped until k3s.restart', async () => {
    const pid = fake.supervisor.status().pid!;
    const stopped = await run('k3s.stop');
    expect(stopped.at(-1)).toMatchObject({ status: 'succeeded', detail: expect.stringContaining('stays stopped') });
    expect(isAlive(pid)).toBe(false);
    expect(fake.supervisor.status()).toMatchObject({ state: 'held', lastExit: { code: 0, signal: null } });
    expect(log()).not.toContain('Second shutdown signal');

    // A restart of the agent does not start it again: the next supervisor finds the hold.
    await fake.supervisor.stop();
    fake = await supervisedFake(dir.dir);
    await fake.supervisor.start();
    await waitFor(() => fake.supervisor.status().state === 'held', 'held by the next supervisor', 30_000);
    expect(starts()).toBe(1);
  });
});
