import type { AlertItem, AlertRule } from '../protocol/hub-alerts-api.js';
import type { DeviceSummary, StreamChange } from '../protocol/hub-api.js';
import { printDeviceTable } from './devices.js';
import type { DeviceFilter, DeviceView } from './fleet-view.js';
import { printable, printableJson, table } from './format.js';
import { HubClient, type HubConnectionOptions } from './hub-client.js';

/**
 * `fleet devices --hub` and `fleet watch --hub`: the same views as the broker-only mode, from the hub's database
 * (every device it ever heard from, with a last-seen time that means the newest message of any kind) and its live
 * stream; and `fleet alerts`, which only the hub has. Filtering happens in the hub.
 */
export async function listDevicesFromHub(
  hub: HubConnectionOptions,
  filter: DeviceFilter,
  options: { json: boolean },
  out: (text: string) => void,
): Promise<DeviceSummary[]> {
  const query: Record<string, string | string[]> = {
    label: Object.entries(filter.labels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...(filter.group ? { group: filter.group } : {}),
    ...(filter.onlineOnly ? { state: 'online' } : {}),
  };
  const devices = await new HubClient(hub).allDevices(query);
  if (options.json) out(`${printableJson(JSON.stringify(devices, null, 2))}\n`);
  else printDeviceTable(devices.map(viewOf), out);
  return devices;
}

export interface AlertFilter {
  /** Undefined: open and resolved. */
  state?: 'open' | 'resolved';
  rule?: AlertRule;
  device?: string;
  limit: number;
}

/** `fleet alerts --hub`: the hub's alerts, newest first, with how many are open on the hub in all. */
export async function listAlertsFromHub(
  hub: HubConnectionOptions,
  filter: AlertFilter,
  options: { json: boolean },
  out: (text: string) => void,
): Promise<AlertItem[]> {
  const { state, rule, device, limit } = filter;
  const query = { ...(state ? { state } : {}), ...(rule ? { rule } : {}), ...(device ? { device } : {}) };
  const { alerts, open } = await new HubClient(hub).alerts(query, limit);
  if (options.json) {
    out(`${printableJson(JSON.stringify(alerts, null, 2))}\n`);
    return alerts;
  }
  const rows = alerts.map((a) => [a.openedAt, a.severity, a.state, a.rule, a.subject, a.summary, a.remedy ?? '-']);
  out(table(['OPENED', 'SEVERITY', 'STATE', 'RULE', 'SUBJECT', 'SUMMARY', 'REMEDY'], rows));
  out(`${alerts.length} alert(s) shown, ${open} open on the hub\n`);
  return alerts;
}

function viewOf(device: DeviceSummary): DeviceView {
  return {
    deviceId: device.deviceId,
    ...(device.name ? { name: device.name } : {}),
    state: device.state,
    lastSeen: device.lastSeen,
    labels: device.labels,
    groups: device.groups,
    ...(device.fleetletVersion ? { fleetletVersion: device.fleetletVersion } : {}),
    ...(device.k3sVersion ? { k3sVersion: device.k3sVersion } : {}),
    ...(device.k3sHealthy !== null ? { k3sHealthy: device.k3sHealthy } : {}),
    ...(device.k3sState ? { k3sState: device.k3sState } : {}),
    // The hub keeps presence and inventory apart from the retained messages: nothing was cut short.
    seen: { presence: true, inventory: true },
  };
}

export async function watchHub(
  hub: HubConnectionOptions,
  options: { json: boolean; device?: string },
  until: Promise<void>,
  out: (line: string) => void,
  onReady: (what: string) => void,
): Promise<number> {
  let count = 0;
  await new HubClient(hub).stream(
    options.device ? { device: options.device } : {},
    until,
    (change) => {
      count += 1;
      out(options.json ? printableJson(JSON.stringify(change)) : textLine(change));
    },
    () => onReady(`watching ${hub.url}/api/v1/stream${options.device ? ` for ${options.device}` : ''}`),
  );
  return count;
}

function textLine(change: StreamChange): string {
  switch (change.type) {
    case 'device.reported':
      return printable(`reported  ${change.lastSeen}  ${change.deviceId}`);
    case 'device.online':
      return printable(`online    ${change.at}  ${change.deviceId}`);
    case 'device.offline':
      return printable(`offline   ${change.at}  ${change.deviceId}${change.reason ? ` (${change.reason})` : ''}`);
    case 'event':
      return printable(
        `event     ${change.event.occurredAt}  ${change.event.deviceId}  ${change.event.severity} ${change.event.kind} ${change.event.state}: ${change.event.message}`,
      );
    case 'alert.opened':
    case 'alert.resolved':
      return printable(
        `${change.type === 'alert.opened' ? 'alert     ' : 'resolved  '}${change.alert.updatedAt}  ${change.alert.subject}  ${change.alert.severity} ${change.alert.rule}: ${change.alert.summary}`,
      );
  }
}
