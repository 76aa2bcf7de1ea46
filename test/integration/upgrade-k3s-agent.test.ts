import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { stringify } from 'yaml';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import { waitFor } from '../helpers/wait.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { isolatedK3s, savedK3sState, startAgentWithFakeK3s } from '../helpers/agent-config.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { sha256, startReleaseServer } from '../helpers/release-server.js';

/**
 * The whole path: `fleetlet fleet send` signs a k3s.upgrade, the real agent verifies it, and its k3s part (the real
 * supervisor over the fake k3s) is upgraded from a local release mirror; then an upgrade to a build that cannot
 * start is rolled back. Only k3s itself is a stand-in.
 */
describe('k3s upgrade through the real agent', () => {
  it('upgrades k3s from a signed command, and rolls back a build that never becomes healthy', async () => {
    const { dir, cleanup } = tempDir('fleetlet-k3s-e2e-');
    onTestFinished(cleanup);
    const broker = await startMosquitto();
    onTestFinished(() => broker.close());
    const releases = await startReleaseServer();
    onTestFinished(() => releases.close());
    const good = fakeK3sBinary(256 * 1024, 'v1.37.0', 'v1.37.0+k3s1');
    const broken = Buffer.from('#!/bin/sh\necho "level=fatal msg=\\"simulated broken build\\"" >&2\nexit 1\n');
    releases.publish('v1.37.0+k3s1', { k3s: good });
    releases.publish('v1.38.0+k3s1', { k3s: broken });

    const binaryPath = join(dir, 'bin', 'k3s');
    mkdirSync(dirname(binaryPath), { recursive: true });
    writeFileSync(binaryPath, fakeK3sBinary(256 * 1024, 'installed'));
    chmodSync(binaryPath, 0o755);
    const keyFile = join(dir, 'ops.key');
    const key = generateSigningKey(keyFile, 'ops');
    const healthzPort = await freePort();
    const configFile = join(dir, 'config.yaml');
    writeFileSync(
      configFile,
      stringify({
        device: { id: 'pi-e2e' },
        broker: { url: broker.url, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
        k3s: await isolatedK3s(dir, binaryPath, {
          artifactUrl: releases.artifactUrl,
          channelUrl: releases.channelUrl,
          allowInsecureMirror: true,
          nodeName: 'pi-e2e',
          kubeletArgs: [`healthz-port=${healthzPort}`],
        }),
        commands: { trustedKeys: [{ id: 'ops', publicKey: key.publicKey }], k3sUpgrade: { healthTimeoutSeconds: 10, minFreeBytes: 1024 } },
        stateDir: join(dir, 'state'),
        telemetry: { http: { enabled: false } },
        log: { level: 'info' },
      }),
    );
    const fleet = await Observer.connect(broker.url, ['fleetlet/v1/devices/pi-e2e/presence']);
    onTestFinished(() => fleet.client.endAsync());
    const agent = startAgentWithFakeK3s(configFile, dir, healthzPort);
    onTestFinished(agent.stop);
    await waitFor(() => fleet.messages.some((m) => (m.json as { state?: string }).state === 'online'), 'the agent online', 20_000);
    await waitFor(() => savedK3sState(join(dir, 'state')) === 'running-healthy', () => `k3s healthy (${agent.output().slice(-2000)})`, 30_000);

    // Asynchronously: a blocked test process would stop reading the agent's output, and the agent would block on it.
    const send = (version: string) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const args = ['fleet', 'send', 'k3s.upgrade', '--device', 'pi-e2e', '--arg', `version=${version}`, '--wait', '60', '--key', keyFile, '--broker', broker.url, '--allow-plaintext'];
        execFile(process.execPath, [FLEETLET_BUNDLE, ...args], { timeout: 90_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
        );
      });
    const upgraded = await send('v1.37.0+k3s1');
    expect(upgraded.code, upgraded.stdout + upgraded.stderr).toBe(0);
    expect(upgraded.stdout).toMatch(/succeeded: k3s v1\.36\.3\+k3s1 -> v1\.37\.0\+k3s1, healthy/);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(good));

    const rolledBack = await send('v1.38.0+k3s1');
    expect(rolledBack.code).toBe(1);
    expect(rolledBack.stdout).toMatch(/failed \(rolled_back\): v1\.38\.0\+k3s1 was not healthy/);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(good));
    expect(rolledBack.stdout).toMatch(/progress rollback_wait_health/);
  }, 180_000);
});
