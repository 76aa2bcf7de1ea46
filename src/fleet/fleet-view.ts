import type { MqttClient } from 'mqtt';
import { EventSchema } from '../protocol/event.js';
import { InventorySchema } from '../protocol/inventory.js';
import { PresenceSchema } from '../protocol/presence.js';
import { CommandResultSchema } from '../protocol/result.js';
import { StatusSchema } from '../protocol/status.js';
import type { DeviceChannel, Topics } from '../protocol/topics.js';

const MAX_MESSAGE_BYTES = 256 * 1024;

/** What the operator side knows about one device from its retained presence and inventory (and any live message). */
export interface DeviceView {
  deviceId: string;
  /** The name the device's config gives it (`device.name`), from its inventory. */
  name?: string;
  state: 'online' | 'offline' | 'unknown';
  /** Time of the newest message of any kind from the device (presence, inventory, status, event, result). */
  lastSeen?: string;
  fleetletVersion?: string;
  k3sVersion?: string;
  labels: Record<string, string>;
  groups: string[];
  /** From the newest status sample only: an older sample arriving late (from a device's backlog) does not count. */
  k3sHealthy?: boolean;
  k3sState?: string;
  statusSampledAt?: string;
  /** Whether the retained presence and inventory were seen: a device missing one of them was cut short. */
  seen: { presence: boolean; inventory: boolean };
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

/** Every device channel the fleet view folds in; commands are the operators' own messages. */
const VIEW_CHANNELS: DeviceChannel[] = ['presence', 'inventory', 'status', 'events', 'results'];

/**
 * Reads the fleet from the broker: subscribes to every device channel, takes the retained messages that arrive at
 * once (and any live message meanwhile), and returns when no retained message came for `settleMs` (bounded by
 * `maxWaitMs`).
 *
 * The subscription is QoS 0 on purpose: a retained message is delivered at the lower of its own and the
 * subscription's QoS, and mosquitto queues at most `max_queued_messages` (default 1,000) QoS 1 messages per client
 * and silently drops the rest, so a QoS 1 snapshot of 2,000 devices stopped at 1,020. QoS 0 messages bypass that
 * queue; a retained snapshot loses nothing by it (a lost connection fails the whole listing anyway).
 */
export async function collectFleet(
  client: MqttClient,
  topics: Topics,
  options: { settleMs: number; maxWaitMs: number },
): Promise<Map<string, DeviceView>> {
  const devices = new Map<string, DeviceView>();
  let lastMessageAt = Date.now();
  const onMessage = (topic: string, payload: Buffer, packet: { retain: boolean }) => {
    const where = topics.parseDeviceTopic(topic);
    if (!where || payload.length > MAX_MESSAGE_BYTES) return;
    // Only the retained snapshot settles: live status and events of a large fleet never pause for settleMs.
    if (packet.retain) lastMessageAt = Date.now();
    applyMessage(devices, where.deviceId, where.channel, payload);
  };
  client.on('message', onMessage);
  try {
    await client.subscribeAsync(VIEW_CHANNELS.map((c) => topics.allDevices(c)), { qos: 0 });
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

/**
 * Devices whose retained presence or inventory never arrived. Every agent publishes both on each connect, so a
 * device with only one of them was cut short: by a broker that dropped messages, or by a `forget` half done.
 */
export function incompleteDevices(devices: Iterable<DeviceView>): DeviceView[] {
  return [...devices].filter((d) => !d.seen.presence || !d.seen.inventory);
}

/** Folds one message into the view; malformed payloads are skipped. Exported for `fleet watch` and rollouts. */
export function applyMessage(devices: Map<string, DeviceView>, deviceId: string, channel: string, payload: Buffer): void {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return;
  }
  const device = devices.get(deviceId) ?? newView(deviceId);
  if (!foldInto(device, channel, json)) return;
  devices.set(deviceId, device);
}

function newView(deviceId: string): DeviceView {
  return { deviceId, state: 'unknown', labels: {}, groups: [], seen: { presence: false, inventory: false } };
}

/** True when the message was valid for its channel and folded in. */
function foldInto(device: DeviceView, channel: string, json: unknown): boolean {
  switch (channel) {
    case 'presence': {
      const presence = PresenceSchema.safeParse(json);
      if (!presence.success) return false;
      device.state = presence.data.state;
      device.seen.presence = true;
      device.lastSeen = later(device.lastSeen, presence.data.at);
      device.fleetletVersion ??= presence.data.fleetletVersion;
      return true;
    }
    case 'inventory': {
      const inventory = InventorySchema.safeParse(json);
      if (!inventory.success || inventory.data.deviceId !== device.deviceId) return false;
      device.seen.inventory = true;
      device.lastSeen = later(device.lastSeen, inventory.data.collectedAt);
      device.fleetletVersion = inventory.data.fleetletVersion;
      if (inventory.data.name) device.name = inventory.data.name;
      if (inventory.data.k3sVersion) device.k3sVersion = inventory.data.k3sVersion;
      device.labels = inventory.data.labels;
      device.groups = inventory.data.groups;
      return true;
    }
    case 'status': {
      const status = StatusSchema.safeParse(json);
      if (!status.success) return false;
      device.lastSeen = later(device.lastSeen, status.data.sampledAt);
      if (device.statusSampledAt !== undefined && status.data.sampledAt < device.statusSampledAt) return true;
      device.statusSampledAt = status.data.sampledAt;
      device.k3sHealthy = status.data.k3s.healthy;
      device.k3sState = status.data.k3s.state;
      if (status.data.k3s.version) device.k3sVersion = status.data.k3s.version;
      return true;
    }
    case 'events': {
      const event = EventSchema.safeParse(json);
      if (!event.success) return false;
      device.lastSeen = later(device.lastSeen, event.data.occurredAt);
      return true;
    }
    case 'results': {
      const result = CommandResultSchema.safeParse(json);
      if (!result.success) return false;
      device.lastSeen = later(device.lastSeen, new Date(result.data.at).toISOString());
      return true;
    }
    default:
      return false;
  }
}

/** Compared as dates: devices write their times with differing precision. */
function later(a: string | undefined, b: string): string {
  return a === undefined || Date.parse(b) > Date.parse(a) ? b : a;
}
