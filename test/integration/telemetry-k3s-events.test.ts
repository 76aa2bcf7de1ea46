import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { EventSchema, type FleetEvent } from '../../src/protocol/event.js';
import { InventorySchema } from '../../src/protocol/inventory.js';
import { StatusSchema, type Status } from '../../src/protocol/status.js';
import { isolatedK3s, writeAgentConfig } from '../helpers/agent-config.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';
import { freePort } from '../helpers/ports.js';
import { processesMatching, signalIfAlive } from '../helpers/processes.js';

/** What the agent queued for the fleet so far, read from its database (read-only) while it runs. */
function queued(stateDir: string): { events: FleetEvent[]; status: Status[]; inventory: unknown } {
  let db: BetterSqlite3.Database;
  try {
    db = new BetterSqlite3(join(stateDir, 'fleetlet.db'), { readonly: true, fileMustExist: true });
  } catch {
    return { events: [], status: [], inventory: undefined }; // not created yet
  }
  try {
    const rows = db.prepare('SELECT topic, body FROM outbox ORDER BY seq').all() as { topic: string; body: string }[];
    const kv = db.prepare("SELECT value FROM kv WHERE key = 'telemetry.inventory'").get() as { value: string } | undefined;
    return {
      events: rows.filter((r) => r.topic.endsWith('/events')).map((r) => EventSchema.parse(JSON.parse(r.body))),
      status: rows.filter((r) => r.topic.endsWith('/status')).map((r) => StatusSchema.parse(JSON.parse(r.body))),
      inventory: kv ? JSON.parse(kv.value) : undefined,
    };
  } catch {
    return { events: [], status: [], inventory: undefined };
  } finally {
    db.close();
  }
}

describe('k3s supervisor events through the telemetry event gate', () => {
  it('reach the outbox as event messages, and the status and inventory carry the k3s view', async () => {
    const { dir, cleanup } = tempDir('fleetlet-telemetry-k3s-');
    onTestFinished(cleanup);
    const config = writeAgentConfig(dir, {
      device: { id: 'pi-events' },
      broker: { url: `mqtt://127.0.0.1:${await freePort()}` },
      k3s: await isolatedK3s(dir, FAKE_K3S, { token: 'K10abc::node:events-join-token' }),
      telemetry: { intervalSeconds: 5, http: { enabled: false } },
      log: { level: 'warn' },
    });
    const agent: ChildProcess = spawn(process.execPath, [FLEETLET_BUNDLE, 'agent', '--config', config], {
      stdio: 'ignore',
      env: { ...process.env, FAKE_K3S_AS_ROOT: '1', FAKE_K3S_RECORD_DIR: dir, FAKE_K3S_RETRY_MS: '200' },
    });
    const exited = new Promise((resolve) => agent.once('exit', resolve));
    onTestFinished(async () => {
      if (agent.exitCode === null && agent.signalCode === null) {
        agent.kill('SIGTERM');
        await exited;
      }
      for (const pid of processesMatching(join(dir, 'data'))) signalIfAlive(pid, 'SIGKILL');
    });

    const stateDir = join(dir, 'state');
    let seen = queued(stateDir);
    const upAndHealthy = () => seen.events.some((e) => e.kind === 'k3s.up') && seen.status.some((s) => s.k3s.healthy);
    await waitFor(() => ((seen = queued(stateDir)), upAndHealthy()), 'k3s.up and a healthy sample in the outbox', 60_000);
    const up = seen.events.find((e) => e.kind === 'k3s.up');
    expect(up, JSON.stringify(seen.events)).toMatchObject({ state: 'occurred', severity: 'info', message: 'k3s agent is up and healthy' });
    // Every event the supervisor produced is in the wire spelling and carries no secret.
    for (const event of seen.events) expect(event.kind).toMatch(/^[a-z0-9]+(?:[.-][a-z0-9]+)*$/);
    expect(JSON.stringify(seen.events)).not.toContain('events-join-token');
    expect(seen.status.find((s) => s.k3s.healthy)?.k3s.state).toMatch(/\S/);
    // The inventory is rebuilt at each sample, so it catches up with the identity k3s created at launch.
    let inventory = InventorySchema.parse(seen.inventory);
    await waitFor(() => !!(inventory = InventorySchema.parse(queued(stateDir).inventory)).identity.nodePassword, 'the node password in the inventory', 60_000);
    expect(inventory.deviceId).toBe('pi-events');
    expect(inventory.identity.nodePassword).toMatch(/^sha256:[0-9a-f]{16}$/);
  }, 90_000);
});
