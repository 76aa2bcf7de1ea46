import { describe, expect, it, onTestFinished } from 'vitest';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey, type CommandSpec, type TestKey } from '../fixtures/command-keys.js';
import { operatorEntry, trustDocument } from '../fixtures/trust-documents.js';
import type { CommandResult } from '../../src/protocol/result.js';

/**
 * The real agent (the bundle) over a real broker, configured with a bootstrap root and a legacy operator key: a
 * trust.update signed by the root puts scoped keys in force and revokes the legacy one, and that holds after a restart.
 */
const COMMANDS = 'fleetlet/v1/devices/test-device/commands';
const RESULTS = 'fleetlet/v1/devices/test-device/results';
const PRESENCE = 'fleetlet/v1/devices/test-device/presence';
const root = testKey('root');
const legacy = testKey('legacy-ops');
const ops = testKey('ops-2026');

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

describe('the agent takes its authority from the root-signed trust document', () => {
  it('a trust.update revokes the configured key and scopes the new one, on the wire and after a restart', async () => {
    const { dir, cleanup } = tempDir();
    onTestFinished(cleanup);
    const broker = await startMosquitto();
    onTestFinished(() => broker.close());
    const config = writeAgentConfig(dir, {
      device: { id: 'test-device', groups: ['canary'] },
      broker: { url: broker.url, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
      commands: { trustRoot: root.publicBase64, trustedKeys: [{ id: legacy.id, publicKey: legacy.publicBase64 }] },
    });
    const fleet = await Observer.connect(broker.url, [RESULTS, PRESENCE]);
    onTestFinished(() => fleet.client.endAsync());
    const births = () => fleet.messages.filter((m) => m.topic === PRESENCE && (m.json as { state?: string }).state === 'online').length;
    const send = async (key: TestKey, spec: CommandSpec = {}): Promise<CommandResult> => {
      const command = signedCommand(key, { target: { device: 'test-device' }, ...spec });
      await fleet.client.publishAsync(COMMANDS, encode(command), { qos: 1 });
      const final = await fleet.waitFor((m) => {
        const r = m.json as CommandResult;
        return m.topic === RESULTS && r.commandId === command.id && ['succeeded', 'failed', 'rejected'].includes(r.status);
      }, `the final result of ${command.type} by ${key.id}`);
      return final.json as CommandResult;
    };

    const first = agent(config);
    await waitFor(() => births() === 1, 'the birth message', 20_000);
    expect(await send(legacy)).toMatchObject({ status: 'succeeded' });
    const document = trustDocument(root, 1, {
      operatorKeys: [operatorEntry(ops, { scopes: { types: ['ping'], targets: ['device:test-device'] } })],
      revoked: [legacy.id],
    });
    expect(await send(root, { type: 'trust.update', args: { document } })).toMatchObject({ status: 'succeeded' });
    expect(await send(legacy)).toMatchObject({ status: 'rejected', reason: 'revoked_key' });
    expect(await send(ops, { target: { group: 'canary' } })).toMatchObject({ status: 'rejected', reason: 'out_of_scope' });
    expect(await send(ops, { type: 'k3s.restart' })).toMatchObject({ status: 'rejected', reason: 'out_of_scope' });
    expect(await send(ops)).toMatchObject({ status: 'succeeded' });
    first.child.kill('SIGTERM');
    await first.exited;

    const second = agent(config);
    await waitFor(() => births() === 2, 'the second birth', 20_000);
    expect(second.child.exitCode).toBeNull();
    expect(await send(legacy)).toMatchObject({ status: 'rejected', reason: 'revoked_key' });
    const replayedOld = trustDocument(root, 1, { operatorKeys: [operatorEntry(legacy)] });
    expect(await send(root, { type: 'trust.update', args: { document: replayedOld } })).toMatchObject({ status: 'failed', reason: 'trust_rollback' });
    expect(await send(legacy)).toMatchObject({ status: 'rejected', reason: 'revoked_key' });
    expect(await send(ops)).toMatchObject({ status: 'succeeded' });
  }, 90_000);
});
