import { Topics } from '../protocol/topics.js';
import { checkReadAccess } from './acl-probe.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { collectFleet, incompleteDevices, matches, type DeviceFilter, type DeviceView } from './fleet-view.js';
import { printableJson, table } from './format.js';

/** The whole fleet as the broker's retained messages describe it (the hub mode reads it from the hub instead). */
export async function readFleetFromBroker(connection: FleetConnectionOptions, settleMs = 500): Promise<DeviceView[]> {
  const client = await connectOperator(connection);
  try {
    const topics = new Topics(connection.topicRoot);
    const fleet = await collectFleet(client, topics, { settleMs, maxWaitMs: 15_000 });
    if (fleet.size === 0) await checkReadAccess(client, topics);
    return [...fleet.values()];
  } finally {
    await client.endAsync();
  }
}

/** `fleet devices`: the fleet as a table (or JSON), filtered by label, group or state. */
export async function listDevices(
  connection: FleetConnectionOptions,
  filter: DeviceFilter,
  options: { json: boolean; settleMs?: number },
  out: (text: string) => void,
  warn: (text: string) => void = () => {},
): Promise<DeviceView[]> {
  return printDevices(await readFleetFromBroker(connection, options.settleMs), filter, options, out, warn);
}

/** Prints the devices that match, sorted by id; says on `warn` when the fleet read was incomplete. */
export function printDevices(
  fleet: DeviceView[],
  filter: DeviceFilter,
  options: { json: boolean },
  out: (text: string) => void,
  warn: (text: string) => void,
): DeviceView[] {
  const devices = fleet.filter((d) => matches(d, filter)).sort((a, b) => a.deviceId.localeCompare(b.deviceId));
  if (options.json) out(`${printableJson(JSON.stringify(devices, null, 2))}\n`);
  else printDeviceTable(devices, out);
  const incomplete = incompleteDevices(fleet);
  if (incomplete.length > 0) {
    const sample = incomplete.slice(0, 5).map((d) => `${d.deviceId} (no ${d.seen.presence ? 'inventory' : 'presence'})`);
    warn(
      `warning: ${incomplete.length} device(s) came without their retained presence or inventory: ${sample.join(', ')}` +
        `${incomplete.length > 5 ? ', ...' : ''}. The broker may have dropped messages (mosquitto: raise max_queued_messages),` +
        ' or the device was forgotten half-way (`fleet forget`).\n',
    );
  }
  return devices;
}

function deviceRow(d: DeviceView): string[] {
  return [
    d.deviceId,
    d.name ?? '-',
    d.state,
    d.lastSeen ?? '-',
    d.fleetletVersion ?? '-',
    d.k3sVersion ?? '-',
    d.k3sHealthy === undefined ? '-' : d.k3sHealthy ? 'healthy' : `unhealthy (${d.k3sState ?? '?'})`,
    d.groups.join(',') || '-',
    Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-',
  ];
}

/** The table `fleet devices` prints, from the broker or from the hub. */
export function printDeviceTable(devices: DeviceView[], out: (text: string) => void): void {
  out(table(['DEVICE', 'NAME', 'STATE', 'LAST SEEN', 'FLEETLET', 'K3S', 'HEALTH', 'GROUPS', 'LABELS'], devices.map(deviceRow)));
  const online = devices.filter((d) => d.state === 'online').length;
  out(`${devices.length} device(s), ${online} online\n`);
}
