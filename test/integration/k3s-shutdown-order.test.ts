import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { stringify } from 'yaml';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import { isolatedK3s, savedK3sState, startAgentWithFakeK3s } from '../helpers/agent-config.js';
import { waitFor } from '../helpers/wait.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { startReleaseServer } from '../helpers/release-server.js';

/**
 * The agent's shutdown order, with the real agent: commands are aborted while k3s is still supervised, so a step
 * that restarts k3s finishes (or is kept to run again) instead of being cut short by k3s's own part stopping under
 * it. k3s takes 3 s to exit after its SIGTERM here, so the agent's SIGTERM lands while the upgrade restarts k3s.
 */
describe('the agent stopping in the middle of a k3s upgrade', () => {
  it('aborts the upgrade before it stops supervising k3s, so the next start redoes the restart and succeeds', async () => {
    const { dir, cleanup } = tempDir('fleetlet-shutdown-order-');
    onTestFinished(cleanup);
    const broker = await startMosquitto();
    onTestFinished(() => broker.close());
    const releases = await startReleaseServer();
    onTestFinished(() => releases.close());
    releases.publish('v1.37.0+k3s1', { k3s: fakeK3sBinary(64 * 1024, 'new', 'v1.37.0+k3s1') });

    const binaryPath = join(dir, 'bin', 'k3s');
    mkdirSync(dirname(binaryPath), { recursive: true });
    writeFileSync(binaryPath, fakeK3sBinary(64 * 1024, 'installed'));
    chmodSync(binaryPath, 0o755);
    const keyFile = join(dir, 'ops.key');
    const key = generateSigningKey(keyFile, 'ops');
    const healthzPort = await freePort();
    const configFile = join(dir, 'config.yaml');
    writeFileSync(
      configFile,
      stringify({
        device: { id: 'pi-order' },
        broker: { url: broker.url, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
        k3s: await isolatedK3s(dir, binaryPath, {
          artifactUrl: releases.artifactUrl,
          channelUrl: releases.channelUrl,
          allowInsecureMirror: true,
          nodeName: 'pi-order',
          kubeletArgs: [`healthz-port=${healthzPort}`],
        }),
        commands: { trustedKeys: [{ id: 'ops', publicKey: key.publicKey }], k3sUpgrade: { healthTimeoutSeconds: 20, minFreeBytes: 1024 } },
        stateDir: join(dir, 'state'),
        telemetry: { http: { enabled: false } },
        log: { level: 'info' },
      }),
    );
    const startAgent = () => {
      const agent = startAgentWithFakeK3s(configFile, dir, healthzPort, { FAKE_K3S_ON_SIGTERM: 'slow:3000' });
      onTestFinished(agent.stop);
      return agent;
    };
    const fleet = await Observer.connect(broker.url, ['fleetlet/v1/devices/pi-order/results']);
    onTestFinished(() => fleet.client.endAsync());
    const first = startAgent();
    await waitFor(() => savedK3sState(join(dir, 'state')) === 'running-healthy', () => `k3s healthy (${first.output().slice(-2000)})`, 30_000);

    const sent = new Promise<{ code: number; stdout: string }>((resolve) => {
      const args = ['fleet', 'send', 'k3s.upgrade', '--device', 'pi-order', '--arg', 'version=v1.37.0+k3s1', '--wait', '90', '--key', keyFile, '--broker', broker.url, '--allow-plaintext'];
      execFile(process.execPath, [FLEETLET_BUNDLE, ...args], { timeout: 120_000 }, (err, stdout) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout }),
      );
    });
    await fleet.waitFor((m) => (m.json as { step?: string }).step === 'restart', 'the upgrade restarting k3s', 60_000);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    // The restart finished before the commands part let go: the step kept is the restart, not a health wait
    // entered after a restart that k3s's part, already stopping, cut short.
    const db = new BetterSqlite3(join(dir, 'state', 'fleetlet.db'), { readonly: true });
    const rows = db.prepare("SELECT step FROM command_journal WHERE state = 'running'").all() as { step: string }[];
    db.close();
    expect(rows.map((row) => (JSON.parse(row.step) as { state: string }).state)).toEqual(['restart']);
    expect(fleet.messages.some((m) => (m.json as { status?: string }).status === 'failed')).toBe(false);

    const second = startAgent();
    const result = await sent;
    expect(result.code, result.stdout + second.output().slice(-2000)).toBe(0);
    expect(result.stdout).toMatch(/succeeded: k3s v1\.36\.3\+k3s1 -> v1\.37\.0\+k3s1, healthy/);
    const status = JSON.parse(readFileSync(join(dir, 'state', 'node-agent', 'agent-status.json'), 'utf8')) as { version?: string };
    expect(status.version).toBe('v1.37.0+k3s1');
  }, 180_000);
});
