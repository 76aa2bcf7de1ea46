import { describe, expect, it, onTestFinished } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startTestBroker, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

/** The real agent process (the bundle) talking to a real broker. */
// An id of this file's own: an agent of another test that outlived its broker must never meet ours on a reused port.
const DEVICE_ID = `link-agent-${process.pid}`;
const PRESENCE = `fleetlet/v1/devices/${DEVICE_ID}/presence`;
async function setup(port?: number) {
  const { dir, cleanup } = tempDir();
  onTestFinished(cleanup);
  const brokerPort = port ?? (await freePort());
  const config = writeAgentConfig(dir, {
    device: { id: DEVICE_ID },
    broker: { url: `mqtt://127.0.0.1:${brokerPort}`, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
  });
  return { config, brokerPort };
}

function agent(config: string) {
  const run = startCli(['agent', '--config', config]);
  onTestFinished(async () => {
    if (run.child.exitCode === null && run.child.signalCode === null) {
      run.child.kill('SIGKILL');
      await run.exited;
    }
  });
  return run;
}

async function broker(port: number): Promise<TestBroker> {
  const started = await startTestBroker({ port });
  onTestFinished(() => started.close());
  return started;
}

/** A failed wait shows what the agent said, which is what one needs to know when it fails on a loaded machine. */
async function explained<T>(run: { output: () => string }, wait: Promise<T>): Promise<T> {
  try {
    return await wait;
  } catch (err) {
    throw new Error(`${(err as Error).message}\nagent output:\n${run.output().slice(-4000)}`);
  }
}

type PresenceJson = { state: string; reason?: string; bootSequence: number };
const presence = (fleet: Observer) => fleet.messages.filter((m) => m.topic === PRESENCE).map((m) => m.json as PresenceJson);

describe('agent process and presence', () => {
  it('runs with no broker at boot, then announces itself once the broker starts', async () => {
    const { config, brokerPort } = await setup();
    const run = agent(config);
    await waitFor(() => run.output().includes('fleetlet agent running'), 'the agent to run without a broker');
    await waitFor(() => run.output().includes('ECONNREFUSED'), 'a refused connection attempt');
    expect(run.child.exitCode).toBeNull();

    const up = await broker(brokerPort);
    const fleet = await Observer.connect(up.url, [PRESENCE]);
    onTestFinished(() => fleet.close());
    await explained(run, fleet.waitFor((m) => (m.json as PresenceJson)?.state === 'online', 'the birth message', 45_000));
    expect(presence(fleet)[0]).toMatchObject({ state: 'online', bootSequence: 1 });
  });

  it('SIGKILL: the broker delivers the retained last will; the next start has a higher boot sequence', async () => {
    const { config, brokerPort } = await setup();
    const up = await broker(brokerPort);
    const fleet = await Observer.connect(up.url, [PRESENCE]);
    onTestFinished(() => fleet.close());

    const first = agent(config);
    await explained(first, fleet.waitFor((m) => (m.json as PresenceJson)?.state === 'online', 'the first birth', 45_000));
    first.child.kill('SIGKILL');
    await first.exited;
    await fleet.waitFor((m) => (m.json as PresenceJson)?.state === 'offline', 'the last will');
    expect(presence(fleet)).toEqual([
      expect.objectContaining({ state: 'online', bootSequence: 1 }),
      expect.objectContaining({ state: 'offline', reason: 'connection-lost', bootSequence: 1 }),
    ]);
    expect(await Observer.retained(up.url, PRESENCE)).toMatchObject({ state: 'offline', reason: 'connection-lost' });

    const second = agent(config);
    await explained(second, waitFor(() => presence(fleet).length === 3, 'the second birth', 45_000));
    expect(presence(fleet)[2]).toMatchObject({ state: 'online', bootSequence: 2 });

    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    await waitFor(() => presence(fleet).length === 4, 'the offline message of a clean stop');
    expect(presence(fleet)[3]).toMatchObject({ state: 'offline', reason: 'stopped', bootSequence: 2 });
    expect(await Observer.retained(up.url, PRESENCE)).toMatchObject({ state: 'offline', reason: 'stopped', bootSequence: 2 });
  });

  it('stops cleanly and quickly on SIGTERM while the broker is unreachable', async () => {
    const { config } = await setup();
    const run = agent(config);
    await waitFor(() => run.output().includes('fleetlet agent running'), 'the agent to run');
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  });

  it('refuses to start with a malformed broker section, naming the key', async () => {
    const { dir, cleanup } = tempDir();
    onTestFinished(cleanup);
    const config = writeAgentConfig(dir, { broker: { url: 'mqtt://127.0.0.1:1', allowPlaintext: true, topicRoot: 'a/+/b' } });
    const run = agent(config);
    expect(await run.exited).toBe(78);
    expect(run.output()).toContain('broker.topicRoot');
  });
});
