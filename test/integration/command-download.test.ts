import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { k3sUpgradeHandler, type K3sUpgradeOptions } from '../../src/commands/k3s-upgrade.js';
import { pingHandler } from '../../src/commands/ping.js';
import { SupervisedK3sControl } from '../../src/k3s/control.js';
import { K3sInstaller } from '../../src/k3s/installer.js';
import { NodeSettingsFile } from '../../src/k3s/node-settings.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { tempDir } from '../helpers/paths.js';
import { sha256, startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';

/**
 * k3s.upgrade downloads through the real router, the real control handle, installer and supervisor (over the fake
 * k3s), from a local mirror that misbehaves: no download may hold the command queue for longer than its bounds.
 */
const GOOD = 'v1.37.0+k3s1';
const BROKEN = 'v1.38.0+k3s1';
const GOOD_BINARY = fakeK3sBinary(256 * 1024, GOOD, GOOD);
const operator = testKey('ops');

let server: ReleaseServer;
let dir: string;
let cleanup: () => void;
let binaryPath: string;
let installedSha: string;
let fake: SupervisedFake;
let control: SupervisedK3sControl;
let rig: RouterRig | undefined;

beforeAll(async () => {
  server = await startReleaseServer();
  server.publish(GOOD, { k3s: GOOD_BINARY });
  server.publish(BROKEN, { k3s: '#!/bin/sh\necho "level=fatal msg=\\"simulated broken build\\"" >&2\nexit 1\n' });
});
afterAll(async () => {
  await server.close();
});
beforeEach(async () => {
  ({ dir, cleanup } = tempDir('fleetlet-command-download-'));
  server.fault(GOOD, 'k3s', undefined);
  binaryPath = join(dir, 'bin', 'k3s');
  mkdirSync(join(dir, 'bin'));
  const installed = fakeK3sBinary(64 * 1024, 'installed');
  writeFileSync(binaryPath, installed);
  chmodSync(binaryPath, 0o755);
  installedSha = sha256(installed);
  fake = await supervisedFake(dir, {}, { binaryPath });
  const installer = new K3sInstaller({ binaryPath, arch: 'amd64', artifactUrl: server.artifactUrl, channel: 'stable', channelUrl: server.channelUrl });
  control = new SupervisedK3sControl(fake.supervisor, installer, new NodeSettingsFile(join(dir, 'work', 'node-settings.json')), binaryPath, 50);
  await fake.supervisor.start();
  expect(await control.waitHealthy(30_000, new AbortController().signal)).toEqual({ healthy: true });
});
afterEach(async () => {
  await rig?.router.stop();
  rig?.close();
  rig = undefined;
  await shutDown(fake);
  cleanup();
});

function device(options: Partial<K3sUpgradeOptions> = {}): RouterRig {
  rig = routerRig({
    stateDir: join(dir, 'state'),
    operator,
    handlers: [k3sUpgradeHandler({ k3s: control, healthTimeoutMs: 60_000, minFreeBytes: 1024, downloadIdleTimeoutMs: 60_000, ...options }), pingHandler('test')],
  });
  return rig;
}

const upgrade = (version: string, expiresInMs = 120_000) =>
  signedCommand(operator, { type: 'k3s.upgrade', args: { version }, expiresAt: Date.now() + expiresInMs });
const ping = () => signedCommand(operator, { type: 'ping' });
const cancel = (commandId: string) => signedCommand(operator, { type: 'command.cancel', args: { commandId } });

function finalOf(results: CommandResult[], commandId: string): CommandResult | undefined {
  return results.find((r) => r.commandId === commandId && (r.status === 'succeeded' || r.status === 'failed'));
}

async function untilStep(device: RouterRig, commandId: string, step: string): Promise<void> {
  await waitFor(() => device.outbox.results().some((r) => r.commandId === commandId && r.status === 'progress' && r.step === step), `step ${step}`, 30_000);
}

/** Files beside the binary other than the binary itself and its kept previous version. */
const strayFiles = () => readdirSync(join(dir, 'bin')).filter((name) => name !== 'k3s' && name !== 'k3s.previous');

describe('a k3s.upgrade download cannot wedge the command channel', () => {
  it('fails within the idle timeout when the mirror sends 1 KiB and stalls, and the next command is handled', async () => {
    server.fault(GOOD, 'k3s', { kind: 'stall', bytes: 1024 });
    const d = device({ downloadIdleTimeoutMs: 1_000 });
    const command = upgrade(GOOD);
    const next = ping();
    const started = Date.now();
    d.router.receive(encode(command));
    d.router.receive(encode(next));
    await d.router.idle();
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(finalOf(d.outbox.results(), command.id)).toMatchObject({ status: 'failed', reason: 'download_failed', detail: expect.stringContaining('no data for 1 s') });
    expect(finalOf(d.outbox.results(), next.id)).toMatchObject({ status: 'succeeded' });
    expect(sha256(readFileSync(binaryPath))).toBe(installedSha);
    expect(strayFiles()).toEqual([]);
  }, 40_000);

  it('refuses a release larger than maxArtifactBytes', async () => {
    const d = device({ maxArtifactBytes: 64 * 1024 });
    const command = upgrade(GOOD);
    d.router.receive(encode(command));
    await d.router.idle();
    expect(finalOf(d.outbox.results(), command.id)).toMatchObject({ status: 'failed', reason: 'download_failed', detail: expect.stringContaining('over the limit of 65536') });
    expect(sha256(readFileSync(binaryPath))).toBe(installedSha);
  });

  it('ends the download at the command expiry, reported as expired', async () => {
    server.fault(GOOD, 'k3s', { kind: 'trickle', bytes: 512, everyMs: 100 });
    const d = device({ downloadIdleTimeoutMs: 5_000 });
    const command = upgrade(GOOD, 3_000);
    d.router.receive(encode(command));
    await d.router.idle();
    expect(finalOf(d.outbox.results(), command.id)).toMatchObject({ status: 'failed', reason: 'expired' });
    expect(strayFiles()).toEqual([]);
  }, 40_000);
});

describe('command.cancel', () => {
  it('stops an upgrade stuck in a stalled download: it fails as cancelled, a waiting command cancelled too never runs, the next one does', async () => {
    server.fault(GOOD, 'k3s', { kind: 'stall', bytes: 1024 });
    const d = device();
    const command = upgrade(GOOD);
    const waiting = ping();
    const next = ping();
    d.router.receive(encode(command));
    await untilStep(d, command.id, 'download');
    d.router.receive(encode(waiting));
    const cancelWaiting = cancel(waiting.id);
    d.router.receive(encode(cancelWaiting));
    const started = Date.now();
    const cancelUpgrade = cancel(command.id);
    d.router.receive(encode(cancelUpgrade));
    d.router.receive(encode(next));
    await d.router.idle();
    expect(Date.now() - started).toBeLessThan(10_000);
    const results = d.outbox.results();
    expect(finalOf(results, command.id)).toMatchObject({ status: 'failed', reason: 'cancelled', detail: expect.stringContaining('nothing was changed') });
    expect(finalOf(results, cancelUpgrade.id)).toMatchObject({ status: 'succeeded', type: 'command.cancel' });
    expect(finalOf(results, waiting.id)).toMatchObject({ status: 'failed', reason: 'cancelled', detail: expect.stringContaining('nothing ran') });
    expect(finalOf(results, cancelWaiting.id)).toMatchObject({ status: 'succeeded' });
    expect(results.filter((r) => r.commandId === waiting.id).map((r) => r.status)).toEqual(['accepted', 'failed']);
    expect(finalOf(results, next.id)).toMatchObject({ status: 'succeeded' });
    expect(d.journal.running()).toEqual([]);
    expect(sha256(readFileSync(binaryPath))).toBe(installedSha);
    expect(strayFiles()).toEqual([]);
  }, 40_000);

  it('after the swap, puts the previous k3s back and running before it reports cancelled', async () => {
    const d = device();
    const command = upgrade(BROKEN);
    d.router.receive(encode(command));
    await untilStep(d, command.id, 'wait_health');
    const started = Date.now();
    d.router.receive(encode(cancel(command.id)));
    await d.router.idle();
    // The health timeout is 60 s: ending well before it is the cancel's doing.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(finalOf(d.outbox.results(), command.id)).toMatchObject({
      status: 'failed',
      reason: 'cancelled',
      detail: expect.stringMatching(/cancelled during wait_health.*restored and healthy/),
    });
    expect(sha256(readFileSync(binaryPath))).toBe(installedSha);
    expect(fake.supervisor.status().state).toBe('running-healthy');
  }, 60_000);

  it('answers not_running for an id that is neither running nor waiting', async () => {
    const d = device();
    const done = ping();
    d.router.receive(encode(done));
    await d.router.idle();
    const late = cancel(done.id);
    d.router.receive(encode(late));
    await d.router.idle();
    expect(finalOf(d.outbox.results(), late.id)).toMatchObject({ status: 'failed', reason: 'not_running' });
  });
});

describe('a stop of the agent during a download', () => {
  it('aborts it at once and keeps the command; a resume after its expiry fails it without downloading', async () => {
    server.fault(GOOD, 'k3s', { kind: 'stall', bytes: 1024 });
    const first = device();
    const command = upgrade(GOOD, 4_000);
    first.router.receive(encode(command));
    await untilStep(first, command.id, 'download');
    const started = Date.now();
    await first.router.stop();
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(first.journal.get(command.id)).toMatchObject({ state: 'running', step: { state: 'download' } });
    expect(finalOf(first.outbox.results(), command.id)).toBeUndefined();
    expect(strayFiles()).toEqual([]);
    first.close();
    rig = undefined;

    await waitFor(() => Date.now() > command.expiresAt, 'the command to expire', 10_000);
    const downloads = () => server.requests.filter((path) => path.endsWith(`/${encodeURIComponent(GOOD)}/k3s`)).length;
    const before = downloads();
    const second = device();
    expect(second.router.resumeInterrupted()).toBe(1);
    await second.router.idle();
    expect(finalOf(second.outbox.results(), command.id)).toMatchObject({ status: 'failed', reason: 'expired', detail: expect.stringContaining('nothing was changed') });
    expect(downloads()).toBe(before);
    expect(sha256(readFileSync(binaryPath))).toBe(installedSha);
  }, 40_000);
});

describe('a k3s.upgrade resumed between its download and its swap', () => {
  /** What a crash right after the download leaves: the command running at `swap`, its temp file possibly gone. */
  function interruptedAtSwap(command: ReturnType<typeof upgrade>, newPath: string): void {
    const before = device();
    expect(before.journal.begin(command as never, Date.now())).toBe(true);
    before.journal.saveStep(command.id, { state: 'swap', fromVersion: 'v1.36.3+k3s1', fromSha: installedSha, newPath, newSha: sha256(GOOD_BINARY) }, true);
    before.close();
    rig = undefined;
  }

  it('downloads again when the sweep at start removed its verified file, then completes', async () => {
    const command = upgrade(GOOD);
    interruptedAtSwap(command, join(dir, 'bin', '.k3s.download-5eb7e9ed'));
    const d = device({ healthTimeoutMs: 30_000 });
    d.router.resumeInterrupted();
    await d.router.idle();
    expect(finalOf(d.outbox.results(), command.id)).toMatchObject({ status: 'succeeded', detail: expect.stringContaining('healthy') });
    expect(d.outbox.results().flatMap((r) => (r.commandId === command.id && r.status === 'progress' ? [r.step] : []))).toEqual(
      expect.arrayContaining(['swap', 'download', 'restart', 'wait_health', 'commit']),
    );
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(GOOD_BINARY));
  }, 60_000);

  it('ends as expired, with nothing changed and its file removed, when the command expired meanwhile', async () => {
    const command = upgrade(GOOD, 1_000);
    const newPath = join(dir, 'bin', '.k3s.download-0ddba11e');
    writeFileSync(newPath, GOOD_BINARY, { mode: 0o600 });
    interruptedAtSwap(command, newPath);
    await waitFor(() => Date.now() > command.expiresAt, 'the command to expire', 10_000);
    const d = device();
    d.router.resumeInterrupted();
    await d.router.idle();
    expect(finalOf(d.outbox.results(), command.id)).toMatchObject({ status: 'failed', reason: 'expired' });
    expect(sha256(readFileSync(binaryPath))).toBe(installedSha);
    expect(strayFiles()).toEqual([]);
  }, 40_000);
});
