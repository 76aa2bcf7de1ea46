import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { GUARD_FILE, GUARD_SCRIPT, MARKER_FILE } from '../../src/commands/agent-upgrade-guard.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { sha256 } from '../helpers/release-server.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';

/**
 * agent.upgrade's download in the real agent: a mirror that sends 1 KiB of the new binary and then stalls, a
 * cancel, a disk without room, and the partial downloads a crash left beside the binary.
 */
const RESULTS = 'fleetlet/v1/devices/test-device/results';
const PRESENCE = 'fleetlet/v1/devices/test-device/presence';
const COMMANDS = 'fleetlet/v1/devices/test-device/commands';
const operator = testKey('ops');
const NEW_BINARY = Buffer.concat([readFileSync(FLEETLET_BUNDLE), Buffer.from('\n// build 0.1.1\n')]);

/** A mirror whose every answer announces the new binary and sends its first KiB, then nothing. */
async function stallingMirror(): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const open: ServerResponse[] = [];
  const server: Server = createServer((_req, res) => {
    requests += 1;
    open.push(res);
    res.writeHead(200, { 'content-length': NEW_BINARY.length }).write(NEW_BINARY.subarray(0, 1024));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/fleetlet-new`, requests: () => requests };
}

async function startDevice(options: { idleSeconds?: number; agentUpgrade?: Record<string, unknown> } = {}) {
  const { dir, cleanup } = tempDir('fleetlet-selfupdate-download-');
  onTestFinished(cleanup);
  const broker = await startMosquitto();
  onTestFinished(() => broker.close());
  const binary = join(dir, 'bin', 'fleetlet');
  mkdirSync(join(dir, 'bin'), { recursive: true });
  copyFileSync(FLEETLET_BUNDLE, binary);
  chmodSync(binary, 0o755);
  // What a power cut in the middle of an earlier self-update leaves beside the binary.
  const leftover = join(dir, 'bin', '.fleetlet.download-0badc0de');
  writeFileSync(leftover, randomBytes(64 * 1024));
  const stateDir = join(dir, 'state');
  const config = writeAgentConfig(dir, {
    broker: { url: broker.url, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
    commands: {
      trustedKeys: [{ id: operator.id, publicKey: operator.publicBase64 }],
      downloadIdleTimeoutSeconds: options.idleSeconds ?? 1,
      agentUpgrade: { binaryPath: binary, confirmTimeoutSeconds: 10, ...options.agentUpgrade },
    },
  });
  // The unit's ExecStartPre: the guard runs before the agent, with the same INVOCATION_ID.
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(stateDir, GUARD_FILE), GUARD_SCRIPT, { mode: 0o700 });
  const invocation = { INVOCATION_ID: randomBytes(16).toString('hex') };
  spawnSync('/bin/sh', [join(stateDir, GUARD_FILE), join(stateDir, MARKER_FILE)], { env: invocation, timeout: 10_000 });
  const fleet = await Observer.connect(broker.url, [RESULTS, PRESENCE]);
  onTestFinished(() => fleet.client.endAsync());
  const agent = startCli(['agent', '--config', config], invocation);
  onTestFinished(async () => {
    if (agent.child.exitCode === null && agent.child.signalCode === null) {
      agent.child.kill('SIGTERM');
      await agent.exited;
    }
  });
  await waitFor(() => fleet.messages.some((m) => m.topic === PRESENCE && (m.json as { state: string }).state === 'online'), 'the agent online', 20_000);
  const send = async (type: 'agent.upgrade' | 'ping' | 'command.cancel', args: Record<string, unknown> = {}) => {
    const command = signedCommand(operator, { type, target: { device: 'test-device' }, args });
    await fleet.client.publishAsync(COMMANDS, encode(command), { qos: 1 });
    return command.id;
  };
  const final = async (id: string) =>
    (
      await fleet.waitFor((m) => {
        const r = m.json as CommandResult;
        return m.topic === RESULTS && r.commandId === id && ['succeeded', 'failed', 'rejected'].includes(r.status);
      }, `the final result of ${id} (${agent.output().slice(-1500)})`, 30_000)
    ).json as CommandResult;
  const progressed = (id: string, step: string) =>
    fleet.waitFor((m) => {
      const r = m.json as CommandResult;
      return r.commandId === id && r.status === 'progress' && r.step === step;
    }, `the ${step} step of ${id}`);
  return { binary, leftover, send, final, progressed, agent };
}

describe('agent.upgrade downloads', () => {
  it('removes partial downloads at start; a stalled mirror fails the upgrade within the idle timeout and the next command runs', async () => {
    const mirror = await stallingMirror();
    const device = await startDevice();
    expect(existsSync(device.leftover)).toBe(false);
    const before = sha256(readFileSync(device.binary));

    const started = Date.now();
    const upgrade = await device.send('agent.upgrade', { version: '0.1.1', artifactUrl: mirror.url, sha256: sha256(NEW_BINARY) });
    const ping = await device.send('ping');
    expect(await device.final(upgrade)).toMatchObject({ status: 'failed', reason: 'download_failed', detail: expect.stringContaining('no data for 1 s') });
    expect(await device.final(ping)).toMatchObject({ status: 'succeeded' });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(mirror.requests()).toBe(1);
    expect(sha256(readFileSync(device.binary))).toBe(before);
  }, 60_000);

  it('is stopped by command.cancel while the mirror stalls', async () => {
    const mirror = await stallingMirror();
    // The idle timeout alone would hold the queue for a minute.
    const device = await startDevice({ idleSeconds: 60 });
    const upgrade = await device.send('agent.upgrade', { version: '0.1.1', artifactUrl: mirror.url, sha256: sha256(NEW_BINARY) });
    await device.progressed(upgrade, 'download');
    await waitFor(() => mirror.requests() === 1, 'the download under way');
    const started = Date.now();
    const cancel = await device.send('command.cancel', { commandId: upgrade });
    const ping = await device.send('ping');
    expect(await device.final(upgrade)).toMatchObject({ status: 'failed', reason: 'cancelled', detail: expect.stringContaining('nothing was changed') });
    expect(await device.final(cancel)).toMatchObject({ status: 'succeeded' });
    expect(await device.final(ping)).toMatchObject({ status: 'succeeded' });
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);

  it('checks free space beside the binary before it downloads anything', async () => {
    const mirror = await stallingMirror();
    const device = await startDevice({ agentUpgrade: { minFreeBytes: 2 ** 52 } });
    const upgrade = await device.send('agent.upgrade', { version: '0.1.1', artifactUrl: mirror.url, sha256: sha256(NEW_BINARY) });
    expect(await device.final(upgrade)).toMatchObject({ status: 'failed', reason: 'disk_space', detail: expect.stringContaining(`${2 ** 52} needed`) });
    expect(mirror.requests()).toBe(0);
  }, 60_000);
});
