import { execFile, spawn } from 'node:child_process';
import { publicKeyToBase64 } from '../../src/protocol/ed25519-keys.js';
import { createPublicKey, createPrivateKey } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLEETLET_VERSION } from '../../src/lib/version.js';
import { presenceMessage } from '../../src/protocol/presence.js';
import { waitFor } from '../helpers/wait.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import type { TestKey } from '../fixtures/command-keys.js';
import { startTestDevice, type TestDevice } from '../fixtures/command-device.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function fleetlet(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FLEETLET_BUNDLE, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('fleet CLI against a real broker', () => {
  let broker: TestBroker;
  let dir: { dir: string; cleanup: () => void };
  let operator: TestKey;
  let keyFile: string;
  const devices: TestDevice[] = [];

  beforeAll(async () => {
    broker = await startMosquitto();
    dir = tempDir('fleetlet-fleet-');
    keyFile = join(dir.dir, 'ops-2026.key');
    const made = await fleetlet(['fleet', 'keygen', keyFile]);
    expect(made.code, made.stderr).toBe(0);
    const publicBase64 = /public key (\S+)/.exec(made.stdout)?.[1] ?? '';
    const privateKey = createPrivateKey(readFileSync(keyFile, 'utf8'));
    operator = { id: 'ops-2026', privateKey, publicKey: createPublicKey(privateKey), publicBase64 };
    expect(publicKeyToBase64(operator.publicKey)).toBe(publicBase64);
    const specs = [
      { deviceId: 'pi-1', groups: ['canary'], labels: { site: 'north' } },
      { deviceId: 'pi-2', groups: ['canary'], labels: { site: 'south' } },
      { deviceId: 'pi-3', groups: [], labels: { site: 'north' } },
    ];
    for (const spec of specs) {
      devices.push(
        await startTestDevice({
          brokerUrl: broker.url,
          dir: join(dir.dir, spec.deviceId),
          trustedKeys: [{ id: operator.id, publicKey: operator.publicBase64 }],
          // What logs.collect brings back as the agent's lines.
          eventLog: [{ kind: 'test.booted', detail: { device: spec.deviceId } }, { kind: 'test.linked' }],
          ...spec,
        }),
      );
    }
  });

  afterAll(async () => {
    for (const device of devices) await device.stop();
    await broker?.close();
    dir?.cleanup();
  });

  const common = () => ['--broker', broker.url];
  /** The test broker is plain mqtt://, which the command-sending tools take only with the explicit opt-in. */
  const sending = () => [...common(), '--allow-plaintext'];

  it('keygen writes a 0600 private key, prints only the public half, and never overwrites', async () => {
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const again = await fleetlet(['fleet', 'keygen', keyFile]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists');
  });

  it('send signs a ping, the device verifies it and the CLI shows the result and exits 0', async () => {
    const run = await fleetlet(['fleet', 'send', 'ping', '--device', 'pi-1', '--key', keyFile, '--wait', '20', ...sending()]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/pi-1 +c-\S+ +accepted/);
    expect(run.stdout).toMatch(/pi-1 +c-\S+ +succeeded: pong/);
    expect(run.stdout + run.stderr).not.toContain('PRIVATE KEY');
  });

  it('a key the device does not trust is rejected by the device, and the CLI exits 1', async () => {
    const otherKey = join(dir.dir, 'intruder.key');
    expect((await fleetlet(['fleet', 'keygen', otherKey])).code).toBe(0);
    const run = await fleetlet(['fleet', 'send', 'ping', '--device', 'pi-1', '--key', otherKey, '--wait', '20', ...sending()]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('rejected (unknown_key)');
  });

  it('refuses a private key file others can read, and bad args before anything is sent', async () => {
    const loose = join(dir.dir, 'loose.key');
    await fleetlet(['fleet', 'keygen', loose]);
    chmodSync(loose, 0o644);
    const run = await fleetlet(['fleet', 'send', 'ping', '--device', 'pi-1', '--key', loose, ...sending()]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('readable by others');
    const bad = await fleetlet(['fleet', 'send', 'k3s.upgrade', '--device', 'pi-1', '--arg', 'version=latest', '--key', keyFile, ...sending()]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('invalid args for k3s.upgrade');
  });

  it('shows the lines a logs.collect brings back', async () => {
    const run = await fleetlet(['fleet', 'send', 'logs.collect', '--device', 'pi-2', '--arg', 'lines=5', '--key', keyFile, '--wait', '20', ...sending()]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/ {2}pi-2 \| \S+ test\.booted \{"device":"pi-2"\}\n {2}pi-2 \| \S+ test\.linked \{\}\n/);
    expect(run.stdout).toMatch(/succeeded: 2 line\(s\) in 1 chunk\(s\)/);
  });

  it('takes a secret argument from a file and seals it to the device, keeping it off the command line and out of the output', async () => {
    const tokenFile = join(dir.dir, 'token');
    writeFileSync(tokenFile, 'K10new-join-token::server:0123456789\n', { mode: 0o600 });
    const run = await fleetlet(['fleet', 'send', 'k3s.configure', '--device', 'pi-1', '--secret-file', `joinToken=${tokenFile}`, '--key', keyFile, '--wait', '20', ...sending()]);
    // This device runs with k3s off: it verified the signed command and refused it as unavailable.
    expect(run.stdout).toContain('rejected (disabled): k3s.configure is not available on this device');
    expect(run.stdout + run.stderr).not.toContain('K10new-join-token');
  });

  it('exits 75 when nobody answers in time, and says plainly that the target is unknown', async () => {
    const run = await fleetlet(['fleet', 'send', 'ping', '--device', 'ghost', '--key', keyFile, '--wait', '1', ...sending()]);
    expect(run.code).toBe(75);
    expect(run.stderr).toContain('no final result');
    expect(run.stdout).toContain('device ghost is unknown here: no retained presence or inventory under fleetlet/v1/devices/ghost; check the id');
  });

  it('says plainly that the target is offline', async () => {
    const client = await mqtt.connectAsync(broker.url);
    await client.publishAsync('fleetlet/v1/devices/pi-gone/presence', JSON.stringify({ ...presenceMessage('offline', 2, '0.1.0', 'connection-lost'), at: '2026-03-01T08:00:00.000Z' }), { qos: 1, retain: true });
    await client.endAsync();
    const run = await fleetlet(['fleet', 'send', 'ping', '--device', 'pi-gone', '--key', keyFile, '--wait', '1', ...sending()]);
    expect(run.code).toBe(75);
    expect(run.stdout).toContain('device pi-gone is offline (last seen 2026-03-01T08:00:00.000Z): it answers once it is back online');
    const forgotten = await fleetlet(['fleet', 'forget', 'pi-gone', ...common()]);
    expect(forgotten.code, forgotten.stderr).toBe(0);
  });

  it('sends to a group, stops waiting once every known member answered, and sums up', async () => {
    const started = Date.now();
    const run = await fleetlet(['fleet', 'send', 'ping', '--group', 'canary', '--key', keyFile, '--wait', '25', ...sending()]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('to group canary: 2 member(s) online, 0 offline');
    expect(run.stdout).toContain('2 device(s) answered: 2 succeeded, 0 failed or rejected');
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('devices lists the fleet from retained messages, with label, group and JSON output', async () => {
    const all = await fleetlet(['fleet', 'devices', ...common()]);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/^DEVICE +NAME +STATE +LAST SEEN +FLEETLET +K3S/m);
    // With k3s off the device reports no k3s version.
    expect(all.stdout).toMatch(new RegExp(`^pi-2 +- +online .* ${FLEETLET_VERSION.replaceAll('.', '\\.')} +- .* canary +site=south$`, 'm'));
    expect(all.stdout).toContain('3 device(s), 3 online');
    const north = await fleetlet(['fleet', 'devices', '--label', 'site=north', '--json', ...common()]);
    expect((JSON.parse(north.stdout) as { deviceId: string }[]).map((d) => d.deviceId)).toEqual(['pi-1', 'pi-3']);
    const canary = await fleetlet(['fleet', 'devices', '--group', 'canary', '--json', ...common()]);
    expect((JSON.parse(canary.stdout) as { deviceId: string }[]).map((d) => d.deviceId)).toEqual(['pi-1', 'pi-2']);
  });

  it('watch prints live results and skips retained history', async () => {
    const watcher = spawn(process.execPath, [FLEETLET_BUNDLE, 'fleet', 'watch', '--duration', '20', ...common()], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    watcher.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    watcher.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => watcher.once('exit', (code) => resolve(code)));
    await waitFor(() => stderr.includes('watching fleetlet/v1/devices/+/presence'), 'the watcher to subscribe', 20_000);
    const sent = await fleetlet(['fleet', 'send', 'ping', '--device', 'pi-3', '--key', keyFile, '--wait', '20', ...sending()]);
    expect(sent.code).toBe(0);
    await waitFor(() => /results +\S+ +pi-3 +c-\S+ +succeeded: pong/.test(stdout), 'the result in the watch', 20_000);
    watcher.kill('SIGINT');
    expect(await exited, stderr).toBe(0);
    expect(stdout).not.toMatch(/^presence/m);
  });
});
