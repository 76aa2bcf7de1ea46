import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { statusSpoolDir } from '../../src/store/status-spool.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { waitFor } from '../helpers/wait.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Status rows in the agent's state database (read-only, as another process). */
function storedStatus(stateDir: string): number {
  const file = join(stateDir, 'fleetlet.db');
  if (!existsSync(file)) return 0;
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    return (db.prepare("SELECT COUNT(*) AS n FROM outbox WHERE class = 'status'").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('the agent with its runtimeDir in RAM', () => {
  it('keeps status samples in the spool while the broker is away, and commits them to the database at a clean stop', { timeout: 60_000 }, async () => {
    const { dir, cleanup } = tempDir('fleetlet-agent-spool-');
    const run = tempDir('fleetlet-agent-run-', '/dev/shm');
    cleanups.push(cleanup, run.cleanup);
    const stateDir = join(dir, 'state');
    const config = writeAgentConfig(dir, {
      broker: { url: `mqtt://127.0.0.1:${await freePort()}` }, // nobody listens: the link stays down
      runtimeDir: run.dir,
      telemetry: { intervalSeconds: 5, http: { enabled: false } },
      log: { level: 'warn' },
    });
    const agent = spawn(process.execPath, [FLEETLET_BUNDLE, 'agent', '--config', config], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => agent.once('exit', resolve));
    cleanups.push(async () => {
      if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
      await exited;
    });

    const spoolDir = statusSpoolDir(run.dir, stateDir)!;
    const spooled = () => (existsSync(spoolDir) ? readdirSync(spoolDir).filter((f) => f.endsWith('.json')).length : 0);
    await waitFor(() => spooled() >= 2, 'two status samples in the spool', 40_000);
    expect(storedStatus(stateDir)).toBe(0);

    const inSpool = spooled();
    agent.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(storedStatus(stateDir)).toBeGreaterThanOrEqual(inSpool);
    expect(existsSync(spoolDir)).toBe(false);
  });
});
