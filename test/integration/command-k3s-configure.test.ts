import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { k3sConfigureHandler } from '../../src/commands/k3s-configure.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildAgentInvocation } from '../../src/k3s/args.js';
import { SupervisedK3sControl } from '../../src/k3s/control.js';
import { K3sInstaller } from '../../src/k3s/installer.js';
import { NodeSettingsFile, withNodeSettings, type NodeSettings } from '../../src/k3s/node-settings.js';
import type { Command } from '../../src/protocol/command.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { sealedConfigure, tokenOfArgv } from '../fixtures/sealed-configure.js';
import { FileSealKey } from '../../src/identity/seal-key.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';

const operator = testKey('ops');
const TOKEN = 'K10rotated-secret-token::server:abcdef';
/** Never resolves (RFC 2606): the fake k3s retries it forever, as k3s does with an unreachable server. */
const UNREACHABLE = 'https://k3s.unreachable.invalid:6443';
const HEALTH_TIMEOUT_MS = 2_500;

/**
 * k3s.configure through the real router, journal, settings file and supervisor over the fake k3s: what k3s runs
 * with is read from the started process itself (its argv and environment), not from a stand-in.
 */
describe('k3s.configure on the supervised (fake) k3s', () => {
  let dir: string;
  let cleanup: () => void;
  let fake: SupervisedFake;
  let settings: NodeSettingsFile;
  let control: SupervisedK3sControl;
  let rig: RouterRig;
  let deviceKey: FileSealKey;

  beforeEach(async () => {
    ({ dir, cleanup } = tempDir('fleetlet-k3s-configure-'));
    settings = new NodeSettingsFile(join(dir, 'work', 'node-settings.json'));
    const k3s = ConfigSchema.parse({
      broker: { url: 'mqtts://broker.example:8883' },
      k3s: { serverUrl: 'https://10.0.0.1:6443', token: 'K10abc::node:original', dataDir: join(dir, 'data'), nodeName: 'pi-01' },
    }).k3s;
    fake = await supervisedFake(dir, {}, {
      invocation: () => buildAgentInvocation({ ...withNodeSettings(k3s, settings.load()), disableApiserverLb: true }),
    });
    const installer = new K3sInstaller({
      binaryPath: FAKE_K3S,
      arch: 'amd64',
      artifactUrl: 'http://127.0.0.1:9/download',
      channel: 'stable',
      channelUrl: 'http://127.0.0.1:9/channels',
    });
    control = new SupervisedK3sControl(fake.supervisor, installer, settings, FAKE_K3S, 50);
    await fake.supervisor.start();
    expect(await control.waitHealthy(30_000, new AbortController().signal)).toEqual({ healthy: true });
    mkdirSync(join(dir, 'state'), { recursive: true });
    deviceKey = (await FileSealKey.loadOrCreate(join(dir, 'state'))).key;
    rig = routerRig({ stateDir: join(dir, 'state'), operator, handlers: [k3sConfigureHandler(control, HEALTH_TIMEOUT_MS, deviceKey)] });
  });
  afterEach(async () => {
    rig.close();
    await shutDown(fake);
    cleanup();
  });

  const configure = async (args: Record<string, unknown>) => {
    const envelope = sealedConfigure(operator, args, deviceKey);
    rig.router.receive(encode(envelope));
    await rig.router.idle();
    return rig.outbox.results().filter((r) => r.commandId === envelope.id);
  };
  /** What the running k3s was started with, as the fake recorded it. */
  const running = () => {
    const pid = fake.supervisor.status().pid!;
    const argv = (JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as { argv: string[] }).argv;
    return { pid, argv, token: tokenOfArgv(argv) };
  };
  const settingsOnDisk = (): NodeSettings => JSON.parse(readFileSync(join(dir, 'work', 'node-settings.json'), 'utf8')) as NodeSettings;

  it('applies labels and a rotated token with a restart of k3s, and never echoes the token', async () => {
    const before = running().pid;
    const results = await configure({ labels: { zone: 'north' }, joinToken: TOKEN });
    expect(results.at(-1)).toMatchObject({ status: 'succeeded', detail: 'applied labels, joinToken; k3s healthy' });
    expect(settingsOnDisk()).toEqual({ labels: { zone: 'north' }, joinToken: TOKEN });
    const now = running();
    expect(now.pid).not.toBe(before);
    expect(now.argv).toEqual(expect.arrayContaining(['--node-label', 'zone=north']));
    expect(now.argv.join(' ')).not.toContain(TOKEN);
    expect(now.token).toBe(TOKEN);
    expect(JSON.stringify(rig.outbox.records)).not.toContain(TOKEN);
    expect(JSON.stringify(rig.journal.get(results[0]!.commandId!)?.command)).not.toContain(TOKEN);
  });

  it('puts exactly the previous settings back, and k3s runs on them, when k3s is not healthy with the new ones', async () => {
    await configure({ labels: { zone: 'north' } });
    const results = await configure({ serverUrl: UNREACHABLE, joinToken: TOKEN, labels: { zone: 'south' } });
    expect(results.at(-1)).toMatchObject({
      status: 'failed',
      reason: 'rolled_back',
      detail: expect.stringContaining('previous settings restored and healthy'),
    });
    expect(results.map((r) => (r.status === 'progress' ? r.step : r.status))).toEqual(['accepted', 'applied', 'reverted', 'failed']);
    expect(settingsOnDisk()).toEqual({ labels: { zone: 'north' } });
    expect(running().argv).toEqual(expect.arrayContaining(['--server', 'https://10.0.0.1:6443', 'zone=north']));
    expect(running().token).toBe('K10abc::node:original');
    expect(await control.waitHealthy(5_000, new AbortController().signal)).toEqual({ healthy: true });
    expect(JSON.stringify(rig.outbox.records)).not.toContain(TOKEN);
  });

  it('a run resumed after a crash between writing the settings and saving its step still reverts to the settings from before it', async () => {
    await configure({ labels: { zone: 'north' } });
    const envelope = signedCommand(operator, { type: 'k3s.configure', args: { serverUrl: UNREACHABLE, labels: { zone: 'south' } } });
    // The crashed run: accepted and journaled, its new settings written, then the process died before saving the step.
    expect(rig.journal.begin(envelope as unknown as Command, Date.now())).toBe(true);
    await control.applyNodeSettings(envelope.id, { serverUrl: UNREACHABLE, labels: { zone: 'south' } });
    expect(rig.journal.get(envelope.id)?.step).toBeUndefined();

    expect(rig.router.resumeInterrupted()).toBe(1);
    await rig.router.idle();
    const results = rig.outbox.results().filter((r) => r.commandId === envelope.id);
    expect(results.at(-1)).toMatchObject({ status: 'failed', reason: 'rolled_back' });
    expect(settingsOnDisk()).toEqual({ labels: { zone: 'north' } });
    expect(running().argv).toEqual(expect.arrayContaining(['--server', 'https://10.0.0.1:6443', 'zone=north']));
  });

  it('a run resumed after the revert was decided reports the rollback, not the old settings as a success', async () => {
    await configure({ labels: { zone: 'north' } });
    const envelope = signedCommand(operator, { type: 'k3s.configure', args: { labels: { zone: 'south' } } });
    // The crashed run had applied the change, found k3s unhealthy, saved the decision and put the settings back.
    expect(rig.journal.begin(envelope as unknown as Command, Date.now())).toBe(true);
    await control.applyNodeSettings(envelope.id, { labels: { zone: 'south' } });
    rig.journal.saveStep(envelope.id, { phase: 'reverting', reason: 'not healthy within 2500 ms' }, true);
    await control.revertNodeSettings(envelope.id);

    rig.router.resumeInterrupted();
    await rig.router.idle();
    const results = rig.outbox.results().filter((r) => r.commandId === envelope.id);
    expect(results.at(-1)).toMatchObject({ status: 'failed', reason: 'rolled_back', detail: expect.stringContaining('not healthy within 2500 ms') });
    expect(settingsOnDisk()).toEqual({ labels: { zone: 'north' } });
  });
});
