import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAlive, shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { tempDir } from '../helpers/paths.js';

let dir: string;
let cleanup: () => void;
let running: SupervisedFake[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-launch-'));
});
afterEach(async () => {
  for (const fake of running) await shutDown(fake);
  running = [];
  cleanup();
});

/**
 * A fleetlet killed while it spawned k3s (fork and exec of a large process take a while on a busy board) never
 * wrote the process record: the next one must still find that k3s, by the launch id it handed it, and adopt it
 * instead of starting a second k3s that fights it over its ports.
 */
describe('k3s supervisor after a fleetlet killed while spawning k3s', () => {
  it('adopts the k3s of the last launch although its process record was never written', async () => {
    const first = await supervisedFake(dir);
    running.push(first);
    await first.supervisor.start();
    await waitFor(() => first.supervisor.status().state === 'running-healthy', 'healthy', 30_000);
    const pid = first.supervisor.status().pid!;
    await first.supervisor.stop();
    running = [];
    // As if fleetlet had died inside the spawn: k3s runs, the record does not exist.
    rmSync(join(first.workDir, 'agent-process.json'));

    const second = await supervisedFake(dir, {}, { healthzUrl: first.healthzUrl });
    running.push(second);
    await second.supervisor.start();
    await waitFor(() => second.supervisor.status().state === 'running-healthy', 'adopted and healthy', 30_000);
    expect(second.supervisor.status()).toMatchObject({ pid, adopted: true });
    expect(second.kinds()).toContain('k3s.adopted');
    expect(readdirSync(dir).filter((name) => /^\d+\.json$/.test(name))).toHaveLength(1); // one k3s ever started

    await shutDown(second);
    running = [];
    await waitFor(() => !isAlive(pid), 'adopted k3s stopped', 30_000);
  });
});
