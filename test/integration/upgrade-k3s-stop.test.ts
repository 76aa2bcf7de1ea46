import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { k3sUpgradeHandler } from '../../src/commands/k3s-upgrade.js';
import { SupervisedK3sControl } from '../../src/k3s/control.js';
import { K3sInstaller } from '../../src/k3s/installer.js';
import { NodeSettingsFile } from '../../src/k3s/node-settings.js';
import { fakeK3sRelease } from '../helpers/fake-k3s.js';
import { shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { tempDir } from '../helpers/paths.js';
import { startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';

const OLD = 'v1.35.2+k3s1';
const BROKEN = 'v1.36.4+k3s1';
const operator = testKey('ops');

/**
 * A clean stop of the agent (SIGTERM) in the middle of an upgrade is not a verdict on the new k3s. The real
 * supervisor runs the installed (fake) k3s; the real installer downloads the new one from a local release server.
 */
describe('k3s upgrade when the agent stops cleanly mid-way', () => {
  let dir: { dir: string; cleanup: () => void } | undefined;
  let fake: SupervisedFake | undefined;
  let releases: ReleaseServer | undefined;
  let rig: RouterRig | undefined;
  afterEach(async () => {
    rig?.close();
    if (fake) await shutDown(fake);
    await releases?.close();
    dir?.cleanup();
  });

  it('keeps the state it was in, and the next start resumes it to the right outcome', async () => {
    dir = tempDir('fleetlet-upgrade-stop-');
    releases = await startReleaseServer();
    releases.publish(BROKEN, { k3s: fakeK3sRelease(BROKEN, 'never-healthy') });
    const binaryPath = join(dir.dir, 'bin', 'k3s');
    mkdirSync(join(dir.dir, 'bin'), { recursive: true });
    writeFileSync(binaryPath, fakeK3sRelease(OLD));
    chmodSync(binaryPath, 0o755);
    fake = await supervisedFake(dir.dir, {}, { binaryPath });
    const installer = new K3sInstaller({ binaryPath, arch: 'amd64', artifactUrl: releases.artifactUrl, channel: 'stable', channelUrl: releases.channelUrl });
    const k3s = new SupervisedK3sControl(fake.supervisor, installer, new NodeSettingsFile(join(dir.dir, 'work', 'node-settings.json')), binaryPath, 50);
    await fake.supervisor.start();
    expect(await k3s.waitHealthy(30_000, new AbortController().signal)).toEqual({ healthy: true });

    const seen: string[] = [];
    let stopping: Promise<void> | undefined;
    const handler = (onState?: (state: string) => void) =>
      k3sUpgradeHandler({ k3s, healthTimeoutMs: 5000, minFreeBytes: 1024, ...(onState ? { onState } : {}) });
    const stateDir = join(dir.dir, 'state');
    const first = routerRig({
      stateDir,
      operator,
      handlers: [
        handler((state) => {
          seen.push(state);
          // The agent gets SIGTERM while it waits for the new k3s to become healthy.
          // The test awaits `stopping` once the router is idle.
          if (state === 'wait_health') {
            setTimeout(() => {
              stopping = first.router.stop();
            }, 200);
          }
        }),
      ],
    });
    rig = first;
    const command = signedCommand(operator, { type: 'k3s.upgrade', args: { version: BROKEN } });
    first.router.receive(encode(command));
    await first.router.idle();
    await stopping;
    expect(seen).toEqual(['check', 'download', 'swap', 'restart', 'wait_health']);
    expect(first.journal.get(command.id)).toMatchObject({ state: 'running', step: { state: 'wait_health' } });
    expect(first.outbox.results().filter((r) => r.status === 'succeeded' || r.status === 'failed')).toEqual([]);
    expect(await k3s.installedVersion()).toBe(BROKEN);
    first.close();

    rig = routerRig({ stateDir, operator, handlers: [handler()] });
    expect(rig.router.resumeInterrupted()).toBe(1);
    await rig.router.idle();
    expect(rig.outbox.results().at(-1)).toMatchObject({ commandId: command.id, status: 'failed', reason: 'rolled_back' });
    expect(await k3s.installedVersion()).toBe(OLD);
    expect(await k3s.waitHealthy(10_000, new AbortController().signal)).toEqual({ healthy: true });
  }, 60_000);
});
