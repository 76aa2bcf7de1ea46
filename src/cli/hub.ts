import { dirname } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { openHubDatabase, readPasswordFile } from '../hub/db/open.js';
import { readHubStatus, type HubStatus } from '../hub/hub-status.js';
import { EXIT } from './exit-codes.js';
import { loadSelectedConfig } from './load-selected-config.js';
import type { CliIo, ConfigSelection } from './program.js';

/** `fleetlet hub` runs the service (the daemon does that); `fleetlet hub status` is answered here. */
export type HubCliAction = { kind: 'run' } | { kind: 'status'; json: boolean };

export async function runHubStatus(selection: ConfigSelection, options: { json: boolean; nativeBinding?: (dir: string) => unknown }, io: CliIo): Promise<number> {
  const loaded = loadSelectedConfig(selection, io);
  if (!loaded) return EXIT.CONFIG;
  const status = await readStatus(loaded, options.nativeBinding);
  io.stdout(options.json ? `${JSON.stringify(status, null, 2)}\n` : renderHubStatus(status));
  return EXIT.OK;
}

async function readStatus({ config }: LoadedConfig, nativeBinding?: (dir: string) => unknown): Promise<HubStatus> {
  const { database } = config.hub;
  const hub = await openHubDatabase({
    url: database.url,
    password: database.passwordFile ? readPasswordFile(database.passwordFile) : undefined,
    file: database.file,
    maxConnections: 1,
    nativeBinding: database.url ? undefined : nativeBinding?.(dirname(database.file)),
  });
  try {
    return await readHubStatus(hub);
  } finally {
    await hub.close();
  }
}

export function renderHubStatus(status: HubStatus): string {
  const { devices, rows } = status;
  const health = Object.entries(devices.health).map(([h, n]) => `${n} ${h}`).join(', ') || 'none';
  const last = status.lastStoredAtMs === null ? 'never' : new Date(status.lastStoredAtMs).toISOString();
  return [
    `database    ${status.database.dialect} ${status.database.location} (${(status.database.bytes / 1024 / 1024).toFixed(1)} MiB)`,
    `devices     ${devices.total} (${devices.online} online, ${devices.offline} offline; health: ${health})`,
    `conflicts   ${devices.identityConflicts} device id(s) presented by more than one machine`,
    `ingest      ${status.storedLastMinute} reports in the last minute; last stored ${last}`,
    `rejected    ${status.rejectedTotal} invalid messages in all (${rows.rejected_messages} kept aside)`,
    `rows        ${Object.entries(rows).map(([t, n]) => `${t} ${n}`).join(', ')}`,
    '',
  ].join('\n');
}
