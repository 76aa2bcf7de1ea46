import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_EXAMPLE } from '../../src/protocol/event.js';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';

describe('fleet watch across a broker restart', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startMosquitto();
  });

  afterAll(async () => {
    await broker?.close();
  });

  it('says the connection was lost, reconnects, and goes on printing live messages', async () => {
    const watch = startCli(['fleet', 'watch', '--duration', '60', '--broker', broker.url]);
    try {
      await waitFor(() => watch.output().includes('watching fleetlet/v1/devices/+/presence'), 'the watch to subscribe', 20_000);
      await broker.restart();
      await waitFor(() => watch.output().includes(`lost the connection to ${broker.url}; reconnecting`), 'the watch to say it lost the broker', 20_000);
      await waitFor(() => watch.output().includes(`reconnected to ${broker.url}`), 'the watch to reconnect', 20_000);
      const device = await mqtt.connectAsync(broker.url);
      await device.publishAsync('fleetlet/v1/devices/pi-9/events', JSON.stringify({ ...EVENT_EXAMPLE, message: 'after the restart' }), { qos: 1 });
      await device.endAsync();
      await waitFor(() => /^events +\S+ +pi-9 .*after the restart/m.test(watch.output()), 'the event published after the restart', 20_000);
      watch.child.kill('SIGINT');
      expect(await watch.exited, watch.output()).toBe(0);
    } finally {
      watch.child.kill('SIGKILL');
    }
  });

  it('exits non-zero with the reason when the broker cannot be reached at the start', async () => {
    await broker.stop();
    try {
      const watch = startCli(['fleet', 'watch', '--duration', '30', '--broker', broker.url]);
      expect(await watch.exited).not.toBe(0);
      expect(watch.output()).toContain(`cannot connect to ${broker.url}`);
    } finally {
      await broker.restart();
    }
  });
});
