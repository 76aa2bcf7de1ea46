import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LOG_FILE } from '../../src/k3s/supervisor.js';
import { descendantsOf, signalIfAlive } from '../helpers/processes.js';
import { isAlive, supervisedFake } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { tempDir } from '../helpers/paths.js';

let dir: string;
let cleanup: () => void;
const pidsToStop: number[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-log-'));
});
afterEach(async () => {
  for (const pid of pidsToStop.splice(0)) {
    signalIfAlive(pid, 'SIGTERM');
    await waitFor(() => !isAlive(pid), 'k3s to stop', 30_000);
  }
  cleanup();
});

/** k3s's rotation size, shrunk from 50 MB for the test (the fake's knob); the rest of the rotation is k3s's own. */
const MAX_FILE_BYTES = 64 * 1024;
const BACKUPS = 3;

describe('k3s log file', () => {
  it('stays bounded while fleetlet is not running: k3s rotates it itself and keeps three compressed backups', async () => {
    // A k3s whose password the server rejects retries forever: here every millisecond, one long line each time.
    const fake = await supervisedFake(dir, {
      FAKE_K3S_SERVER: 'password-rejected',
      FAKE_K3S_RETRY_MS: '1',
      FAKE_K3S_LOG_MAX_BYTES: String(MAX_FILE_BYTES),
    });
    await fake.supervisor.start();
    await waitFor(() => fake.kinds().includes('k3s.password-rejected'), 'k3s to run and complain', 30_000);
    const pid = fake.supervisor.status().pid!;
    pidsToStop.push(pid);
    // fleetlet goes away (a stop, a crash, a restart that fails over and over); k3s keeps running and writing.
    await fake.supervisor.stop();
    expect(isAlive(pid)).toBe(true);

    const logs = () => readdirSync(fake.workDir).filter((name) => name.startsWith('agent-output'));
    const rotations = new Set<string>();
    let largestTotal = 0;
    await waitFor(() => {
      const names = logs();
      for (const name of names) if (name.endsWith('.gz')) rotations.add(name);
      const sizes = names.map((name) => statSync(join(fake.workDir, name), { throwIfNoEntry: false })?.size ?? 0);
      largestTotal = Math.max(largestTotal, sizes.reduce((a, b) => a + b, 0));
      expect(statSync(join(fake.workDir, LOG_FILE)).size).toBeLessThanOrEqual(MAX_FILE_BYTES);
      expect(names.filter((name) => name.endsWith('.gz')).length).toBeLessThanOrEqual(BACKUPS);
      // Twice the bound's worth of files came and went: without rotation the file would be that large by now.
      return rotations.size >= 2 * (BACKUPS + 1);
    }, 'k3s to write several times what the log may hold', 60_000);
    expect(largestTotal).toBeLessThanOrEqual((BACKUPS + 1) * MAX_FILE_BYTES);

    // What is kept is whole: the backups are k3s's lines, compressed.
    const backup = logs().find((name) => name.endsWith('.gz'))!;
    const lines = gunzipSync(readFileSync(join(fake.workDir, backup))).toString('utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThan(100);
    expect(lines.every((line) => line.includes('Node password rejected'))).toBe(true);

    // The k3s that wrote it all is still the one fleetlet started: the "k3s init" parent and its agent child.
    expect(isAlive(pid)).toBe(true);
    expect(descendantsOf(pid)).toHaveLength(1);
  });
});
