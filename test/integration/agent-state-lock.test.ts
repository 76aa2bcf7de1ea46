import { afterAll, beforeAll, expect, it } from 'vitest';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { startTestBroker, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';

let broker: TestBroker;
const { dir, cleanup } = tempDir('fleetlet-state-lock-');
beforeAll(async () => {
  broker = await startTestBroker();
});
afterAll(async () => {
  await broker.close();
  cleanup();
});

/**
 * Two agents on one state directory would share the MQTT client id and kick each other off the broker, and write
 * the same outbox. The second must refuse to start, say why, and leave the first alone.
 */
it('refuses a second agent on the same state directory, naming the first, and leaves the first online', async () => {
  const config = writeAgentConfig(dir, { device: { id: 'lock-01' }, broker: { url: broker.url, allowPlaintext: true } });
  const observer = await Observer.connect(broker.url, ['fleetlet/v1/devices/lock-01/presence']);
  const first = startCli(['agent', '--config', config]);
  try {
    await waitFor(() => first.output().includes('online: subscribed to commands'), 'the first agent online', 20_000);
    const presencesBefore = observer.messages.length;

    const second = startCli(['agent', '--config', config]);
    expect(await second.exited).toBe(1);
    expect(second.output()).toContain(`another fleetlet agent (pid ${first.child.pid}) is running on the state directory`);
    // It never reached the broker: no new presence, and the first was never disconnected.
    expect(second.output()).not.toContain('connected to the broker');
    expect(observer.messages.length).toBe(presencesBefore);
    expect(first.output()).not.toContain('disconnected from the broker');
    expect(first.child.exitCode).toBeNull();
  } finally {
    first.child.kill('SIGTERM');
    await first.exited;
    await observer.client.endAsync(true);
  }
}, 60_000);

it('leaves no stale lock: after the first agent is killed, the next one starts', async () => {
  const config = writeAgentConfig(dir, { device: { id: 'lock-02' }, broker: { url: broker.url, allowPlaintext: true } });
  const first = startCli(['agent', '--config', config]);
  await waitFor(() => first.output().includes('fleetlet agent running'), 'the first agent running', 20_000);
  first.child.kill('SIGKILL');
  await first.exited;

  const next = startCli(['agent', '--config', config]);
  try {
    await waitFor(() => next.output().includes('fleetlet agent running'), 'the next agent running', 20_000);
    expect(next.output()).not.toContain('another fleetlet agent');
  } finally {
    next.child.kill('SIGTERM');
    expect(await next.exited).toBe(0);
  }
}, 60_000);
