import type { MqttClient } from 'mqtt';
import { InventorySchema } from '../protocol/inventory.js';
import { PresenceSchema } from '../protocol/presence.js';
import { StatusSchema } from '../protocol/status.js';
import type { Topics } from '../protocol/topics.js';

const MAX_MESSAGE_BYTES = 256 * 1024;

/** What the operator side knows about one device from its retained presence and inventory (and any live status). */
export interface DeviceView {
  deviceId: string;
  state: 'online' | 'offline' | 'unknown';
  /** Time of the last presence or status message. */
  lastSeen?: string;
  fleetletVersion?: string;
  k3sVersion?: string;
  labels: Record<string, string>;
  groups: string[];
  k3sHealthy?: boolean;
  k3sState?: string;
}

export interface DeviceFilter {
  labels?: Record<string, string>;
  group?: string;
  onlineOnly?: boolean;
}

export function matches(device: DeviceView, filter: DeviceFilter): boolean {
  if (filter.onlineOnly && device.state !== 'online') return false;
  if (filter.group && !device.groups.includes(filter.group)) return false;
  return Object.entries(filter.labels ?? {}).every(([key, value]) => device.labels[key] === value);
}

/**
 * Reads the fleet from the broker: subscribes to presence, inventory and status, takes the retained messages that
 * arrive at once, and returns when nothing new came for `settleMs` (bounded by `maxWaitMs`).
 */
export async function collectFleet(
  client: MqttClient,
  topics: Topics,
  options: { settleMs: number; maxWaitMs: number },
): Promise<Map<string, DeviceView>> {
  const devices = new Map<string, DeviceView>();
  let lastMessageAt = Date.now();
  const onMessage = (topic: string, payload: Buffer) => {
    const where = topics.parseDeviceTopic(topic);
    if (!where || payload.length > MAX_MESSAGE_BYTES) return;
    lastMessageAt = Date.now();
    applyMessage(devices, where.deviceId, where.channel, payload);
  };
  client.on('message', onMessage);
  try {
    await client.subscribeAsync(
      ['presence', 'inventory', 'status'].map((c) => topics.allDevices(c as 'presence')),
      { qos: 1 },
    );
    const started = Date.now();
    lastMessageAt = started;
    while (Date.now() - lastMessageAt < options.settleMs && Date.now() - started < options.maxWaitMs) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return devices;
  } finally {
    client.off('message', onMessage);
  }
}

/** Folds one message into the view; malformed payloads are skipped. Exported for `fleet watch` and rollouts. */
export function applyMessage(devices: Map<string, DeviceView>, deviceId: string, channel: string, payload: Buffer): void {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return;
  }
  const device = devices.get(deviceId) ?? { deviceId, state: 'unknown', labels: {}, groups: [] };
  if (channel === 'presence') {
    const presence = PresenceSchema.safeParse(json);
    if (!presence.success) return;
    device.state = presence.data.state;
    device.lastSeen = later(device.lastSeen, presence.data.at);
    device.fleetletVersion ??= presence.data.fleetletVersion;
  } else if (channel === 'inventory') {
    const inventory = InventorySchema.safeParse(json);
    if (!inventory.success || inventory.data.deviceId !== deviceId) return;
    device.fleetletVersion = inventory.data.fleetletVersion;
    if (inventory.data.k3sVersion) device.k3sVersion = inventory.data.k3sVersion;
    device.labels = inventory.data.labels;
    device.groups = inventory.data.groups;
  } else if (channel === 'status') {
    const status = StatusSchema.safeParse(json);
    if (!status.success) return;
    device.lastSeen = later(device.lastSeen, status.data.sampledAt);
    device.k3sHealthy = status.data.k3s.healthy;
    device.k3sState = status.data.k3s.state;
    if (status.data.k3s.version) device.k3sVersion = status.data.k3s.version;
  } else {
    return;
  }
  devices.set(deviceId, device);
}

function later(a: string | undefined, b: string): string {
  return a === undefined || b > a ? b : a;
}
