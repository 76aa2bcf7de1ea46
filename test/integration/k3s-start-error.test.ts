import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EventSchema } from '../../src/protocol/event.js';
import { isolatedK3s, startAgentWithFakeK3s, writeAgentConfig } from '../helpers/agent-config.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { startTestBroker, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

let broker: TestBroker;
beforeAll(async () => {
  broker = await startTestBroker();
});
afterAll(async () => {
  await broker.close();
});

/**
 * A k3s that cannot start for a reason fleetlet knows (here: no server to join) must say that reason wherever a
 * person looks: the agent log, `fleetlet k3s status`, and the event the fleet gets, not only "could not be started".
 */
it('says why k3s could not be started in the log, in `k3s status` and in the event', async () => {
  const { dir, cleanup } = tempDir('fleetlet-k3s-start-error-');
  const binary = join(dir, 'k3s');
  writeFileSync(binary, fakeK3sBinary(4096), { mode: 0o755 });
  const k3s = await isolatedK3s(dir, binary);
  delete k3s.serverUrl;
  const healthzPort = await freePort();
  const config = writeAgentConfig(dir, { device: { id: 'start-error-01' }, broker: { url: broker.url, allowPlaintext: true }, k3s });
  const observer = await Observer.connect(broker.url, ['fleetlet/v1/devices/start-error-01/events']);
  const agent = startAgentWithFakeK3s(config, dir, healthzPort);
  const reason = 'k3s.serverUrl is not set: the agent needs a server to join';
  try {
    await waitFor(() => agent.output().includes(`k3s could not be started: ${reason}`), 'the reason in the agent log', 30_000);

    const seen = await observer.waitFor((m) => m.topic.endsWith('/events') && m.text.includes('k3s.start-failed'), 'the start-failed event', 30_000);
    const event = EventSchema.parse(seen.json);
    expect(event.message).toBe(`k3s agent could not be started: ${reason}`);

    const status = runCli(['k3s', 'status', '--config', config]);
    expect(status.stdout).toContain('problem:  k3s.start-failed');
    expect(status.stdout).toContain(reason);
  } finally {
    await agent.stop();
    await observer.client.endAsync(true);
    cleanup();
  }
}, 60_000);
