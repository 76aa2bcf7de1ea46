import { DeviceIdSchema, GroupIdSchema } from './ids.js';

/**
 * Every MQTT topic fleetlet uses, built in one place from validated ids only: an id cannot carry '/', '+' or '#',
 * so config or inventory can never widen a subscription or write into another device's topics.
 */
export const SCHEMA_VERSION = 1;

export type DeviceChannel = 'presence' | 'inventory' | 'status' | 'events' | 'commands' | 'results';

export class Topics {
  constructor(readonly root: string) {}

  device(deviceId: string, channel: DeviceChannel): string {
    return `${this.root}/devices/${DeviceIdSchema.parse(deviceId)}/${channel}`;
  }

  groupCommands(group: string): string {
    return `${this.root}/groups/${GroupIdSchema.parse(group)}/commands`;
  }

  /** Operator side: one channel of every device, e.g. all presence messages. */
  allDevices(channel: DeviceChannel): string {
    return `${this.root}/devices/+/${channel}`;
  }

  /** The device id and channel of a device topic, or undefined for any other topic. */
  parseDeviceTopic(topic: string): { deviceId: string; channel: DeviceChannel } | undefined {
    const prefix = `${this.root}/devices/`;
    if (!topic.startsWith(prefix)) return undefined;
    const [deviceId, channel, ...rest] = topic.slice(prefix.length).split('/');
    if (rest.length > 0 || !deviceId || !channel || !DeviceIdSchema.safeParse(deviceId).success) return undefined;
    const channels: DeviceChannel[] = ['presence', 'inventory', 'status', 'events', 'commands', 'results'];
    return channels.includes(channel as DeviceChannel) ? { deviceId, channel: channel as DeviceChannel } : undefined;
  }
}
