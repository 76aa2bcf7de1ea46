import type { MqttClient } from 'mqtt';
import { UsageError } from '../lib/errors.js';
import { DeviceIdSchema } from '../protocol/ids.js';
import { PresenceSchema } from '../protocol/presence.js';
import { Topics } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';

/** How long a retained presence may take to arrive after subscribing; the broker sends it at once. */
const PRESENCE_WAIT_MS = 1_000;

/**
 * `fleet forget`: clears a gone device's retained presence and inventory (an empty retained message deletes the
 * retained one), so `fleet devices` and new subscribers no longer list it. A device still online would publish
 * both again on its next connect, so it is refused unless `force`.
 */
export async function forgetDevices(
  connection: FleetConnectionOptions,
  deviceIds: string[],
  options: { force: boolean },
  out: (line: string) => void,
): Promise<void> {
  for (const deviceId of deviceIds) {
    if (!DeviceIdSchema.safeParse(deviceId).success) throw new UsageError(`"${deviceId}" is not a device id`);
  }
  const topics = new Topics(connection.topicRoot);
  const client = await connectOperator(connection);
  try {
    for (const deviceId of deviceIds) {
      const state = await retainedPresenceState(client, topics.device(deviceId, 'presence'));
      if (state === 'online' && !options.force) {
        throw new UsageError(`${deviceId} is online: it would publish its presence and inventory again; stop it first, or give --force`);
      }
      for (const channel of ['presence', 'inventory'] as const) {
        await client.publishAsync(topics.device(deviceId, channel), Buffer.alloc(0), { qos: 1, retain: true });
      }
      out(state === undefined ? `${deviceId}: nothing retained (already forgotten or never seen); cleared anyway` : `${deviceId}: forgotten (was ${state})`);
    }
  } finally {
    await client.endAsync();
  }
}

async function retainedPresenceState(client: MqttClient, topic: string): Promise<'online' | 'offline' | undefined> {
  let state: 'online' | 'offline' | undefined;
  const onMessage = (received: string, payload: Buffer) => {
    if (received !== topic || payload.length === 0) return;
    try {
      const presence = PresenceSchema.safeParse(JSON.parse(payload.toString('utf8')));
      if (presence.success) state = presence.data.state;
    } catch {
      // not a presence message: nothing to protect
    }
  };
  client.on('message', onMessage);
  try {
    await client.subscribeAsync(topic, { qos: 0 });
    const deadline = Date.now() + PRESENCE_WAIT_MS;
    while (state === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
    await client.unsubscribeAsync(topic);
    return state;
  } finally {
    client.off('message', onMessage);
  }
}
