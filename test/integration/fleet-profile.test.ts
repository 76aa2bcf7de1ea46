import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVENTORY_EXAMPLE } from '../../src/protocol/inventory.js';
import { presenceMessage } from '../../src/protocol/presence.js';
import { runCli } from '../helpers/cli.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';

/** The operator profile through the real CLI: what it holds is used, flags and FLEET_* variables win over it. */
describe('the operator profile', () => {
  let broker: TestBroker;
  let dir: { dir: string; cleanup: () => void };

  beforeAll(async () => {
    broker = await startMosquitto();
    dir = tempDir('fleetlet-profile-');
    const client = await mqtt.connectAsync(broker.url);
    for (const root of ['fleetlet/v1', 'other/v1']) {
      const deviceId = root === 'fleetlet/v1' ? 'pi-default' : 'pi-other';
      await client.publishAsync(`${root}/devices/${deviceId}/presence`, JSON.stringify(presenceMessage('online', 1, '0.1.0')), { qos: 1, retain: true });
      await client.publishAsync(`${root}/devices/${deviceId}/inventory`, JSON.stringify({ ...INVENTORY_EXAMPLE, deviceId }), { qos: 1, retain: true });
    }
    await client.endAsync();
  });

  afterAll(async () => {
    await broker?.close();
    dir?.cleanup();
  });

  function profileIn(configHome: string, text: string): void {
    mkdirSync(join(configHome, 'fleetlet'), { recursive: true });
    writeFileSync(join(configHome, 'fleetlet', 'operator.yaml'), text);
  }

  it('is read from ~/.config/fleetlet/operator.yaml: no --broker needed', () => {
    const home = join(dir.dir, 'home');
    profileIn(join(home, '.config'), `broker: ${broker.url}\ntopicRoot: other/v1\n`);
    const run = runCli(['fleet', 'devices'], { HOME: home });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^pi-other /m);
  });

  it('is read from $XDG_CONFIG_HOME/fleetlet/operator.yaml when that is set, and flags win over it', () => {
    const xdg = join(dir.dir, 'xdg');
    profileIn(xdg, `broker: ${broker.url}\ntopicRoot: other/v1\n`);
    const run = runCli(['fleet', 'devices', '--topic-root', 'fleetlet/v1'], { HOME: join(dir.dir, 'nowhere'), XDG_CONFIG_HOME: xdg });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^pi-default /m);
    expect(run.stdout).not.toContain('pi-other');
  });

  it('FLEET_BROKER_URL wins over the profile', () => {
    const xdg = join(dir.dir, 'xdg-env');
    profileIn(xdg, 'broker: mqtt://127.0.0.1:1\n');
    const run = runCli(['fleet', 'devices'], { XDG_CONFIG_HOME: xdg, FLEET_BROKER_URL: broker.url });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^pi-default /m);
  });

  it('holds the signing key: send signs with it and waits for an answer', () => {
    const xdg = join(dir.dir, 'xdg-key');
    mkdirSync(join(xdg, 'fleetlet'), { recursive: true });
    expect(runCli(['fleet', 'keygen', join(xdg, 'fleetlet', 'ops.key')]).code).toBe(0);
    const without = runCli(['fleet', 'send', 'ping', '--device', 'ghost', '--wait', '1', '--allow-plaintext'], { XDG_CONFIG_HOME: xdg, FLEET_BROKER_URL: broker.url });
    expect(without.code).toBe(64);
    expect(without.stderr).toContain(`no signing key: give --key FILE, set FLEET_SIGNING_KEY, or write signingKey: in ${join(xdg, 'fleetlet', 'operator.yaml')}`);
    profileIn(xdg, `broker: ${broker.url}\nsigningKey: ops.key\n`);
    const sent = runCli(['fleet', 'send', 'ping', '--device', 'ghost', '--wait', '1', '--allow-plaintext'], { XDG_CONFIG_HOME: xdg });
    expect(sent.code, sent.stderr).toBe(75);
    expect(sent.stderr).toContain('no final result');
  });

  it('a wrong key or a missing TLS file in it is named with the profile path, and exits 78 or 64', () => {
    const xdg = join(dir.dir, 'xdg-bad');
    const path = join(xdg, 'fleetlet', 'operator.yaml');
    profileIn(xdg, `brokr: ${broker.url}\n`);
    const typo = runCli(['fleet', 'devices'], { XDG_CONFIG_HOME: xdg });
    expect(typo.code).toBe(78);
    expect(typo.stderr).toContain(`operator profile ${path}: (root): Unrecognized key: "brokr"`);
    profileIn(xdg, `broker: mqtts://127.0.0.1:${broker.port}\ncaFile: fleet-ca.pem\n`);
    const missing = runCli(['fleet', 'devices'], { XDG_CONFIG_HOME: xdg });
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain(`caFile in ${path} ${join(xdg, 'fleetlet', 'fleet-ca.pem')}: cannot read a CA certificate there (ENOENT)`);
  });
});
