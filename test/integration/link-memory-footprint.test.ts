import { createHook } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { connectAsync } from 'mqtt';
import { afterEach, expect, it } from 'vitest';
import { clientOptions } from '../../src/link/client-options.js';
import { LinkSession } from '../../src/link/session.js';
import { INVENTORY_EXAMPLE } from '../../src/protocol/inventory.js';
import { announced, brokerConfig, makeLink } from '../helpers/link.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';

// mqtt-packet is the encoder MQTT.js writes every packet with; its number table is module state of this process.
const numbers = createRequire(import.meta.url)('mqtt-packet/numbers.js') as { cache: Record<number, Buffer> };

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

it('a connected link never builds the 65,536-buffer packet-id table (about 7 MiB of heap)', async () => {
  const broker: TestBroker = await startMosquitto();
  cleanups.push(() => broker.close());
  const made = makeLink(brokerConfig(broker.url), { inventory: () => INVENTORY_EXAMPLE });
  made.link.start();
  cleanups.push(() => made.link.stop());
  // The connect, the subscriptions, the birth and the retained inventory: QoS 1 packets with packet ids.
  await announced(made);
  expect(Object.keys(numbers.cache)).toHaveLength(0);
}, 60_000);

it('a publish on the link makes one promise to await its PUBACK (a drain keeps a window of them alive)', async () => {
  const broker: TestBroker = await startMosquitto();
  cleanups.push(() => broker.close());
  const client = await connectAsync(broker.url, clientOptions(brokerConfig(broker.url), 'dev-a', { topic: 'will', payload: 'offline' }));
  cleanups.push(() => client.endAsync(true));
  const session = new LinkSession(client);

  let promises = 0;
  const hook = createHook({ init: (_id, type) => void (type === 'PROMISE' && (promises += 1)) }).enable();
  const acknowledged = session.publish('fleetlet/v1/devices/dev-a/status', '{"seq":1}', { qos: 1, retain: false });
  hook.disable();

  await acknowledged;
  expect(promises).toBe(1);
}, 60_000);
