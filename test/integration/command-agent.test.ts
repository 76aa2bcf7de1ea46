import { describe, expect, it, onTestFinished } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import type { CommandResult } from '../../src/protocol/result.js';

/** The real agent (the bundle) taking signed commands from a real broker and answering through its outbox. */
const COMMANDS = 'fleetlet/v1/devices/test-device/commands';
const RESULTS = 'fleetlet/v1/devices/test-device/results';
const PRESENCE = 'fleetlet/v1/devices/test-device/presence';
const operator = testKey('ops-2026');
const retired = testKey('ops-2025');
const stranger = testKey('stranger');

async function setup() {
  const { dir, cleanup } = tempDir();
  onTestFinished(cleanup);
  const broker: TestBroker = await startMosquitto();
  onTestFinished(() => broker.close());
  const config = writeAgentConfig(dir, {
    device: { id: 'test-device', groups: ['canary'] },
    broker: { url: broker.url, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
    commands: {
      trustedKeys: [
        { id: operator.id, publicKey: operator.publicBase64 },
        { id: retired.id, publicKey: retired.publicBase64, revoked: true },
      ],
    },
  });
  const fleet = await Observer.connect(broker.url, [RESULTS, PRESENCE]);
  onTestFinished(() => fleet.client.endAsync());
  return { config, broker, fleet };
}

function agent(config: string) {
  const run = startCli(['agent', '--config', config]);
  onTestFinished(async () => {
    if (run.child.exitCode === null && run.child.signalCode === null) {
      run.child.kill('SIGTERM');
      await run.exited;
    }
  });
  return run;
}

const results = (fleet: Observer) => fleet.messages.filter((m) => m.topic === RESULTS).map((m) => m.json as CommandResult);
/** The link subscribes to its command topics before its birth message: after the n-th birth, commands arrive. */
const births = (fleet: Observer) => fleet.messages.filter((m) => m.topic === PRESENCE && (m.json as { state?: string }).state === 'online').length;
const finalFor = (fleet: Observer, id: string) => (m: { json: unknown }) => {
  const r = m.json as CommandResult;
  return r.commandId === id && ['succeeded', 'failed', 'rejected'].includes(r.status);
};

describe('the agent runs signed commands', () => {
  it('answers a signed ping, and refuses forged, revoked, replayed and unavailable commands with reasons', async () => {
    const { config, fleet } = await setup();
    const run = agent(config);
    await waitFor(() => births(fleet) === 1, 'the birth message', 20_000);
    expect(run.child.exitCode).toBeNull();
    const publish = (payload: Buffer) => fleet.client.publishAsync(COMMANDS, payload, { qos: 1 });

    const ping = signedCommand(operator, { target: { device: 'test-device' } });
    await publish(encode(ping));
    await fleet.waitFor(finalFor(fleet, ping.id), 'the ping result');
    expect(results(fleet).filter((r) => r.commandId === ping.id).map((r) => r.status)).toEqual(['accepted', 'succeeded']);

    const cases = [
      ['unknown_key', signedCommand(stranger, { target: { device: 'test-device' } })],
      ['revoked_key', signedCommand(retired, { target: { device: 'test-device' } })],
      ['wrong_target', signedCommand(operator, { target: { group: 'not-mine' } })],
      ['disabled', signedCommand(operator, { type: 'k3s.restart', target: { group: 'canary' } })],
      ['replayed', ping],
    ] as const;
    for (const [reason, envelope] of cases) {
      await publish(encode(envelope));
      const seen = await fleet.waitFor(
        (m) => (m.json as CommandResult).commandId === envelope.id && (m.json as CommandResult).status === 'rejected',
        `the ${reason} refusal`,
      );
      expect(seen.json).toMatchObject({ status: 'rejected', reason });
    }
    expect(results(fleet).filter((r) => r.status === 'succeeded')).toHaveLength(1);
  });

  it("logs.collect returns the agent's own recent log lines", async () => {
    const { config, fleet } = await setup();
    agent(config);
    await waitFor(() => births(fleet) === 1, 'the birth message', 20_000);
    const collect = signedCommand(operator, { type: 'logs.collect', target: { device: 'test-device' }, args: { source: 'agent', lines: 50 } });
    await fleet.client.publishAsync(COMMANDS, encode(collect), { qos: 1 });
    await fleet.waitFor(finalFor(fleet, collect.id), 'the logs.collect result');
    const lines = results(fleet)
      .filter((r) => r.commandId === collect.id && r.status === 'progress')
      .flatMap((r) => (r.status === 'progress' ? ((r.data?.lines as string[] | undefined) ?? []) : []));
    expect(lines.some((line) => line.includes('fleetlet agent starting')), lines.join('\n')).toBe(true);
  });

  it('refuses a signed command made ambiguous by a duplicate or __proto__ key as malformed, and runs it once sent plainly', async () => {
    const { config, fleet } = await setup();
    agent(config);
    await waitFor(() => births(fleet) === 1, 'the birth message', 20_000);
    const ping = signedCommand(operator, { target: { device: 'test-device' } });
    const genuine = JSON.stringify(ping);
    // JSON.parse reads both payloads as the signed ping: the first duplicate and the __proto__ member vanish.
    const ambiguous = [`{"type":"k3s.restart",${genuine.slice(1)}`, genuine.replace('"args":{}', '"args":{"__proto__":{}}')];
    for (const [n, payload] of ambiguous.entries()) {
      await fleet.client.publishAsync(COMMANDS, Buffer.from(payload), { qos: 1 });
      await waitFor(() => results(fleet).filter((r) => r.status === 'rejected').length === n + 1, `refusal ${n + 1}`);
    }
    expect(results(fleet)).toEqual([
      expect.objectContaining({ status: 'rejected', reason: 'malformed', commandId: null, detail: expect.stringContaining('duplicate key "type"') }),
      expect.objectContaining({ status: 'rejected', reason: 'malformed', commandId: null, detail: expect.stringContaining('forbidden key "__proto__"') }),
    ]);
    await fleet.client.publishAsync(COMMANDS, Buffer.from(genuine), { qos: 1 });
    await fleet.waitFor(finalFor(fleet, ping.id), 'the ping result');
    expect(results(fleet).filter((r) => r.commandId === ping.id).map((r) => r.status)).toEqual(['accepted', 'succeeded']);
  });

  it('still refuses a replay after the agent restarted', async () => {
    const { config, fleet } = await setup();
    const first = agent(config);
    await waitFor(() => births(fleet) === 1, 'the first birth', 20_000);
    const ping = signedCommand(operator, { target: { device: 'test-device' } });
    await fleet.client.publishAsync(COMMANDS, encode(ping), { qos: 1 });
    await fleet.waitFor(finalFor(fleet, ping.id), 'the first result');
    first.child.kill('SIGTERM');
    await first.exited;

    const second = agent(config);
    await waitFor(() => births(fleet) === 2, 'the second birth', 20_000);
    expect(second.child.exitCode).toBeNull();
    await fleet.client.publishAsync(COMMANDS, encode(ping), { qos: 1 });
    const refusal = await fleet.waitFor(
      (m) => (m.json as CommandResult).commandId === ping.id && (m.json as CommandResult).status === 'rejected',
      'the replay refusal',
    );
    expect(refusal.json).toMatchObject({ reason: 'replayed' });
  });
});
