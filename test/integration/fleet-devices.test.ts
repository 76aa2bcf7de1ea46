import { spawn } from 'node:child_process';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_EXAMPLE } from '../../src/protocol/event.js';
import { INVENTORY_EXAMPLE } from '../../src/protocol/inventory.js';
import { presenceMessage } from '../../src/protocol/presence.js';
import { STATUS_EXAMPLE } from '../../src/protocol/status.js';
import { runCli } from '../helpers/cli.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { FLEETLET_BUNDLE } from '../helpers/paths.js';

const LARGE_FLEET = 2_000;

/** Publishes what agents leave retained on the broker, at QoS 1 as the link does. */
async function publishRetained(brokerUrl: string, messages: { topic: string; payload: unknown }[]): Promise<void> {
  const client = await mqtt.connectAsync(brokerUrl, { clean: true });
  await Promise.all(messages.map((m) => client.publishAsync(m.topic, m.payload === '' ? '' : JSON.stringify(m.payload), { qos: 1, retain: true })));
  await client.endAsync();
}

function deviceMessages(root: string, deviceId: string, name = `Device ${deviceId}`) {
  return [
    { topic: `${root}/devices/${deviceId}/presence`, payload: presenceMessage('online', 1, '0.1.0') },
    { topic: `${root}/devices/${deviceId}/inventory`, payload: { ...INVENTORY_EXAMPLE, deviceId, name, identity: {}, sealKey: undefined } },
  ];
}

/** Runs the CLI with stdout into a pipe whose reader waits before it reads, as `| jq` on a busy machine does. */
function runIntoSlowPipe(args: string[], readerDelayMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [FLEETLET_BUNDLE, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), readerDelayMs);
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr }));
  });
}

describe('fleet devices against a real mosquitto with its default queue limit', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    // mosquitto's default: at most 1,000 queued QoS 1 messages per client, the rest dropped.
    broker = await startMosquitto({ globalLines: ['max_queued_messages 1000'] });
    const ids = Array.from({ length: LARGE_FLEET }, (_, i) => `dev-${String(i).padStart(4, '0')}`);
    await publishRetained(broker.url, ids.flatMap((id) => deviceMessages('large/v1', id)));
  }, 60_000);

  afterAll(async () => {
    await broker?.close();
  });

  it('--json into a pipe read late delivers the whole JSON of 2,000 devices before the exit', async () => {
    const run = await runIntoSlowPipe(['fleet', 'devices', '--json', '--broker', broker.url, '--topic-root', 'large/v1'], 1_500);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.length).toBeGreaterThan(200_000);
    const devices = JSON.parse(run.stdout) as { deviceId: string }[];
    expect(devices).toHaveLength(LARGE_FLEET);
  });

  it('lists all 2,000 devices although the broker drops QoS 1 messages beyond 1,000 queued', () => {
    const run = runCli(['fleet', 'devices', '--broker', broker.url, '--topic-root', 'large/v1'], {}, 60_000);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`${LARGE_FLEET} device(s), ${LARGE_FLEET} online`);
    expect(run.stderr).not.toContain('warning');
  });

  it('says so when a device came without its retained presence or inventory', async () => {
    await publishRetained(broker.url, [...deviceMessages('partial/v1', 'whole'), deviceMessages('partial/v1', 'cut')[1]!]);
    const run = runCli(['fleet', 'devices', '--broker', broker.url, '--topic-root', 'partial/v1']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('2 device(s), 1 online');
    expect(run.stderr).toContain('1 device(s) came without their retained presence or inventory: cut (no presence)');
  });

  it('shows NAME, LAST SEEN from the newest message of any kind, and HEALTH from the status', async () => {
    const root = 'seen/v1';
    await publishRetained(broker.url, [
      { topic: `${root}/devices/pi-kitchen/presence`, payload: { ...presenceMessage('online', 3, '0.1.0'), at: '2026-03-01T08:00:00.000Z' } },
      { topic: `${root}/devices/pi-kitchen/inventory`, payload: { ...INVENTORY_EXAMPLE, deviceId: 'pi-kitchen', name: 'Kitchen display', collectedAt: '2026-03-01T08:00:01.000Z' } },
      { topic: `${root}/devices/pi-kitchen/status`, payload: { ...STATUS_EXAMPLE, sampledAt: '2026-03-01T09:00:00.000Z', k3s: { state: 'crashloop', healthy: false } } },
      { topic: `${root}/devices/pi-kitchen/events`, payload: { ...EVENT_EXAMPLE, occurredAt: '2026-03-01T09:30:00.000Z' } },
    ]);
    const run = runCli(['fleet', 'devices', '--broker', broker.url, '--topic-root', root]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^DEVICE +NAME +STATE +LAST SEEN +FLEETLET +K3S +HEALTH/m);
    expect(run.stdout).toMatch(/^pi-kitchen +Kitchen display +online +2026-03-01T09:30:00.000Z .* unhealthy \(crashloop\)/m);
  });

  it('forget clears an offline device so that it is no longer listed, and refuses an online one without --force', async () => {
    const root = 'forget/v1';
    await publishRetained(broker.url, [
      ...deviceMessages(root, 'gone'),
      { topic: `${root}/devices/gone/presence`, payload: presenceMessage('offline', 1, '0.1.0', 'connection-lost') },
      ...deviceMessages(root, 'alive'),
    ]);
    const refused = runCli(['fleet', 'forget', 'alive', '--broker', broker.url, '--topic-root', root]);
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain('alive is online');
    const forgotten = runCli(['fleet', 'forget', 'gone', '--broker', broker.url, '--topic-root', root]);
    expect(forgotten.code, forgotten.stderr).toBe(0);
    expect(forgotten.stdout).toContain('gone: forgotten (was offline)');
    const listed = runCli(['fleet', 'devices', '--json', '--broker', broker.url, '--topic-root', root]);
    expect((JSON.parse(listed.stdout) as { deviceId: string }[]).map((d) => d.deviceId)).toEqual(['alive']);
    expect(listed.stderr).toBe('');
  });
});
