import { HubHttpSection, type HubHttpConfig } from '../../src/config/hub-http-schema.js';
import { HubAlertsSection } from '../../src/config/hub-alerts-schema.js';
import { AlertEngine } from '../../src/hub/alerts/engine.js';
import { addOperator, createApiToken } from '../../src/hub/auth/accounts.js';
import type { HubDatabase } from '../../src/hub/db/open.js';
import type { NewDevice } from '../../src/hub/db/tables.js';
import { HubApiServer } from '../../src/hub/api/server.js';
import { createLogger } from '../../src/lib/logger.js';
import type { HubDatabases } from './hub-database.js';

/** A real hub API server over a fresh database of the given kind, on a free loopback port, with accounts to use. */
export interface TestHubApi {
  url: string;
  hub: HubDatabase;
  server: HubApiServer;
  /** API tokens of the accounts `ops` (operator) and `viewer` (viewer). */
  tokens: { operator: string; viewer: string };
  get(path: string, token?: string): Promise<Response>;
  close(): Promise<void>;
}

export const PASSWORDS = { ops: 'correct horse battery', viewer: 'viewer password 1' } as const;

export async function startHubApi(databases: HubDatabases, http: Partial<HubHttpConfig> = {}, streamPollMs = 100): Promise<TestHubApi> {
  const hub = await databases.open();
  const now = Date.now();
  await addOperator(hub, 'ops', 'operator', PASSWORDS.ops, now);
  await addOperator(hub, 'viewer', 'viewer', PASSWORDS.viewer, now);
  const operator = (await createApiToken(hub, { username: 'ops', name: 'test' }, now)).token;
  const viewer = (await createApiToken(hub, { username: 'viewer', name: 'test' }, now)).token;
  const server = new HubApiServer({
    hub,
    http: HubHttpSection.parse({ listen: '127.0.0.1:0', ...http }),
    logger: createLogger({ level: 'silent' }),
    streamPollMs,
  });
  const url = await server.start();
  return {
    url,
    hub,
    server,
    tokens: { operator, viewer },
    get: (path, token = operator) => fetch(`${url}${path}`, { headers: { authorization: `Bearer ${token}` } }),
    close: async () => {
      await server.stop();
      await hub.close();
    },
  };
}

/** A device row as the ingest writes it (labels and groups as JSON.stringify writes them). */
export function deviceRow(deviceId: string, fields: Partial<NewDevice> & { labels?: Record<string, string>; groups?: string[] } = {}): NewDevice {
  const { labels, groups, ...rest } = fields;
  return {
    device_id: deviceId,
    first_seen_ms: Date.UTC(2026, 10, 1),
    last_seen_ms: Date.UTC(2026, 10, 2),
    presence_state: 'online',
    health: 'ok',
    identity_conflict: 0,
    labels_json: JSON.stringify(labels ?? {}),
    groups_json: JSON.stringify(groups ?? []),
    ...rest,
  };
}

/**
 * Devices for the hub's alert engine to raise alerts about: `offline` ones gone for an hour, and `hot` (one of them)
 * reporting 91 °C. Returns the engine after one evaluation, for the test to report more (rollouts) through it.
 */
export async function raiseDeviceAlerts(api: TestHubApi, devices: { offline: string[]; hot: string }): Promise<AlertEngine> {
  const engine = new AlertEngine({ hub: api.hub, config: HubAlertsSection.parse({}), log: createLogger({ level: 'silent' }) });
  const now = Date.now();
  for (const id of devices.offline) {
    await api.hub.db.insertInto('devices').values(deviceRow(id, { presence_state: 'offline', presence_at_ms: now - 3_600_000 })).execute();
  }
  await api.hub.db
    .updateTable('devices')
    .set({ status_json: JSON.stringify({ temperatureC: 91, disks: [], k3s: { state: 'running', healthy: true } }), status_sampled_at_ms: now })
    .where('device_id', '=', devices.hot)
    .execute();
  await engine.evaluate();
  return engine;
}
