import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { Topics } from '../protocol/topics.js';
import { FleetAccessError } from './errors.js';

const PROBE_WAIT_MS = 2_000;

/**
 * An empty fleet, or an identity the broker's ACL silences? mosquitto grants a subscription it will never deliver
 * to (a device certificate used by mistake reads only its own commands), so an empty answer proves nothing. The
 * probe publishes one empty, non-retained message to a presence topic of a device that does not exist, on the
 * subscription already in place, and expects it back. Run only when nothing else came: it leaves no retained trace.
 */
export async function checkReadAccess(client: MqttClient, topics: Topics): Promise<void> {
  const probeTopic = topics.device(`fleetlet-probe-${randomBytes(4).toString('hex')}`, 'presence');
  let received = false;
  const onMessage = (topic: string) => {
    if (topic === probeTopic) received = true;
  };
  client.on('message', onMessage);
  try {
    await client.publishAsync(probeTopic, Buffer.alloc(0), { qos: 1, retain: false });
    const deadline = Date.now() + PROBE_WAIT_MS;
    while (!received && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
  } finally {
    client.off('message', onMessage);
  }
  if (!received) {
    throw new FleetAccessError(
      `the broker delivers nothing to this identity on ${topics.allDevices('presence')}: its ACL silences it (a device ` +
        `certificate or user name given by mistake?); operators need read and write access to ${topics.root}/#`,
    );
  }
}
