import { Topics } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { collectFleet, matches, type DeviceFilter, type DeviceView } from './fleet-view.js';
import { printableJson, table } from './format.js';

/** `fleet devices`: the fleet as a table (or JSON), filtered by label, group or state. */
export async function listDevices(
  connection: FleetConnectionOptions,
  filter: DeviceFilter,
  options: { json: boolean; settleMs?: number },
  out: (text: string) => void,
): Promise<DeviceView[]> {
  const client = await connectOperator(connection);
  try {
    const fleet = await collectFleet(client, new Topics(connection.topicRoot), { settleMs: options.settleMs ?? 500, maxWaitMs: 10_000 });
    const devices = [...fleet.values()].filter((d) => matches(d, filter)).sort((a, b) => a.deviceId.localeCompare(b.deviceId));
    if (options.json) out(`${printableJson(JSON.stringify(devices, null, 2))}\n`);
    else printDeviceTable(devices, out);
    return devices;
  } finally {
    await client.endAsync();
  }
}

/** The table `fleet devices` prints, from the broker or from the hub. */
export function printDeviceTable(devices: DeviceView[], out: (text: string) => void): void {
  const rows = devices.map((d) => [
    d.deviceId,
    d.state,
    d.lastSeen ?? '-',
    d.fleetletVersion ?? '-',
    d.k3sVersion ?? '-',
    d.k3sHealthy === undefined ? '-' : d.k3sHealthy ? 'healthy' : `unhealthy (${d.k3sState ?? '?'})`,
    d.groups.join(',') || '-',
    Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-',
  ]);
  out(table(['DEVICE', 'STATE', 'LAST SEEN', 'FLEETLET', 'K3S', 'HEALTH', 'GROUPS', 'LABELS'], rows));
  const online = devices.filter((d) => d.state === 'online').length;
  out(`${devices.length} device(s), ${online} online\n`);
}
