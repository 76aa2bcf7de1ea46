import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { k3sUpgradeHandler } from '../../src/commands/k3s-upgrade.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { writeShellFakeK3s, type FakeK3sBehaviour } from '../fixtures/command-fake-k3s.js';
import { ProcessK3sControl } from '../fixtures/command-k3s-control.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';

const OLD = 'v1.35.2+k3s1';
const BROKEN = 'v1.36.4+k3s1';
const operator = testKey('ops');

/** A clean stop of the agent (SIGTERM) in the middle of an upgrade is not a verdict on the new k3s. */
describe('k3s upgrade when the agent stops cleanly mid-way', () => {
  let dir: { dir: string; cleanup: () => void };
  let k3s: ProcessK3sControl;
  let rig: RouterRig | undefined;
  afterEach(() => {
    rig?.close();
    k3s?.stop();
    dir?.cleanup();
  });

  it('keeps the state it was in, and the next start resumes it to the right outcome', async () => {
    dir = tempDir('fleetlet-upgrade-stop-');
    const mirror = join(dir.dir, 'mirror');
    for (const [version, behaviour] of [[OLD, 'healthy'], [BROKEN, 'never-healthy']] as [string, FakeK3sBehaviour][]) {
      mkdirSync(join(mirror, version), { recursive: true });
      const bytes = writeShellFakeK3s(join(mirror, version, 'k3s'), version, behaviour);
      writeFileSync(join(mirror, version, 'sha256'), createHash('sha256').update(bytes).digest('hex'));
    }
    mkdirSync(join(dir.dir, 'k3s', 'bin'), { recursive: true });
    writeShellFakeK3s(join(dir.dir, 'k3s', 'bin', 'k3s'), OLD, 'healthy');
    k3s = new ProcessK3sControl(join(dir.dir, 'k3s'), mirror, 0);
    await k3s.restart();

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
          if (state === 'wait_health') setTimeout(() => (stopping = first.router.stop()), 200);
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
  }, 60_000);
});
