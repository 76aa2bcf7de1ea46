import { describe, expect, it, onTestFinished } from 'vitest';
import { InventorySchema } from '../../src/protocol/inventory.js';
import { StatusSchema } from '../../src/protocol/status.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startCli } from '../helpers/cli.js';
import { mosquittoAvailable, startMosquitto } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';

describe.skipIf(!mosquittoAvailable())('telemetry over a real broker', () => {
  it('publishes the inventory retained, and status samples with the link shown as connected', async () => {
    const broker = await startMosquitto();
    onTestFinished(() => broker.close());
    const { dir, cleanup } = tempDir('fleetlet-telemetry-mqtt-');
    onTestFinished(cleanup);
    const config = writeAgentConfig(dir, {
      device: { id: 'pi-mqtt', labels: { site: 'lab' }, groups: ['canary'] },
      broker: { url: broker.url, allowPlaintext: true },
      telemetry: { intervalSeconds: 5, http: { enabled: false } },
    });
    // Subscribed before the agent starts, so that its very first sample is seen too.
    const live = await Observer.connect(broker.url, ['fleetlet/v1/devices/pi-mqtt/+']);
    onTestFinished(() => void live.client.end(true));
    const agent = startCli(['agent', '--config', config]);
    onTestFinished(async () => {
      if (agent.child.exitCode === null) {
        agent.child.kill('SIGTERM');
        await agent.exited;
      }
    });
    const inventory = await live.waitFor((m) => m.topic.endsWith('/inventory'), 'the inventory', 30_000);
    expect(InventorySchema.parse(inventory.json)).toMatchObject({ deviceId: 'pi-mqtt', labels: { site: 'lab' }, groups: ['canary'] });
    // The first sample may predate the connection; a later one sees the link up.
    const connected = await live.waitFor(
      (m) => m.topic.endsWith('/status') && StatusSchema.safeParse(m.json).data?.link.connected === true,
      'a status sample taken while connected',
      30_000,
    );
    const status = StatusSchema.parse(connected.json);
    expect(status.seq).toBeGreaterThanOrEqual(1);
    // Every sample carries a CPU reading, the agent's very first one included.
    const first = live.messages.find((m) => m.topic.endsWith('/status') && StatusSchema.parse(m.json).seq === 1);
    expect(first && StatusSchema.parse(first.json).cpu.percent).toEqual(expect.any(Number));
    expect(Buffer.byteLength(connected.text)).toBeLessThanOrEqual(1024);

    // A client that comes later still gets the inventory: it is retained.
    const late = await Observer.connect(broker.url, ['fleetlet/v1/devices/pi-mqtt/inventory']);
    onTestFinished(() => void late.client.end(true));
    const retained = await late.waitFor((m) => m.topic.endsWith('/inventory'), 'the retained inventory');
    expect(retained.retain).toBe(true);
    expect(InventorySchema.parse(retained.json).hardware.cpuCores).toBeGreaterThan(0);
  }, 90_000);
});
