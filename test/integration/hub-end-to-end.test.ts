import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import { FLEETLET_VERSION } from '../../src/lib/version.js';
import { startTestDevice, type TestDevice } from '../fixtures/command-device.js';
import { runCli, startCli } from '../helpers/cli.js';
import { startHubProcess, writeHubConfig, type HubProcess } from '../helpers/hub-process.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

interface ListedDevice {
  deviceId: string;
  state: string;
  fleetletVersion: string | null;
  lastSeen: string | null;
}

/**
 * The whole path as it runs in the field: a real agent publishes through the real mosquitto, `fleetlet hub` (the
 * bundle the binary embeds) ingests it into its database and serves it, and the operator's `fleet devices --hub` and
 * `fleet watch --hub` read it with an API token made by `fleetlet hub token create`.
 */
describe('agent, broker and hub end to end', () => {
  let broker: TestBroker;
  let dir: { dir: string; cleanup: () => void };
  let hub: HubProcess;
  let apiUrl: string;
  let tokenFile: string;
  let device: TestDevice | undefined;

  beforeAll(async () => {
    broker = await startMosquitto();
    dir = tempDir('fleetlet-hub-e2e-');
    const config = writeHubConfig({ dir: dir.dir, brokerUrl: broker.url, database: { file: join(dir.dir, 'hub.db') }, replicaId: 'e2e' });
    const passwordFile = join(dir.dir, 'password');
    writeFileSync(passwordFile, 'correct horse battery staple\n', { mode: 0o600 });
    const user = runCli(['hub', 'user', 'add', 'ops', '--role', 'viewer', '--password-file', passwordFile, '--config', config]);
    expect(user.code, user.stderr).toBe(0);
    const token = runCli(['hub', 'token', 'create', 'e2e', '--user', 'ops', '--config', config]);
    expect(token.code, token.stderr).toBe(0);
    tokenFile = join(dir.dir, 'token');
    writeFileSync(tokenFile, token.stdout, { mode: 0o600 });
    hub = startHubProcess(config);
    await hub.started();
    await waitFor(() => /"url":"(http:\/\/[^"]+)".*hub API listening/.test(hub.output()), 'the hub API to listen', 30_000);
    apiUrl = /"url":"(http:\/\/[^"]+)".*hub API listening/.exec(hub.output())![1]!;
  }, 90_000);

  afterAll(async () => {
    await device?.stop();
    await hub?.kill('SIGTERM');
    await broker?.close();
    dir?.cleanup();
  });

  const devices = async (): Promise<ListedDevice[]> => {
    const res = await fetch(`${apiUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${readFileSync(tokenFile, 'utf8').trim()}` } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { devices: ListedDevice[] }).devices;
  };

  it("shows a real agent online in the hub's API, streams its going offline, and lists it for fleet devices --hub", async () => {
    const watch = startCli(['fleet', 'watch', '--hub', apiUrl, '--token-file', tokenFile, '--json']);
    try {
      await waitFor(() => watch.output().includes('watching'), 'the watch to be live', 30_000);
      const key = generateSigningKey(join(dir.dir, 'ops.key'), 'ops');
      device = await startTestDevice({ brokerUrl: broker.url, dir: join(dir.dir, 'pi-e2e'), deviceId: 'pi-e2e', trustedKeys: [{ id: 'ops', publicKey: key.publicKey }] });

      await waitFor(async () => (await devices()).some((d) => d.deviceId === 'pi-e2e' && d.state === 'online'), 'the hub to show the agent online', 30_000);
      const listed = (await devices()).find((d) => d.deviceId === 'pi-e2e')!;
      expect(listed.fleetletVersion).toBe(FLEETLET_VERSION);
      expect(Date.now() - Date.parse(listed.lastSeen!)).toBeLessThan(60_000);

      const table = runCli(['fleet', 'devices', '--hub', apiUrl, '--token-file', tokenFile]);
      expect(table.code, table.stderr).toBe(0);
      expect(table.stdout).toMatch(/^pi-e2e\s+\S+\s+online\s/m);

      // A clean stop publishes the agent's offline presence; the hub stores it and its stream says so.
      await device.stop();
      device = undefined;
      await waitFor(() => /"device\.offline".*pi-e2e|pi-e2e.*"device\.offline"/.test(watch.output()), 'the offline change on the stream', 30_000);
      expect((await devices()).find((d) => d.deviceId === 'pi-e2e')?.state).toBe('offline');
    } finally {
      watch.child.kill('SIGTERM');
    }
  }, 120_000);
});
