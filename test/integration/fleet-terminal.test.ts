import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import { waitFor } from '../helpers/wait.js';
import { startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { startTestDevice, type TestDevice } from '../fixtures/command-device.js';

/**
 * The operator's terminal against a hostile device: whatever a device puts in its labels, log lines or events
 * reaches the screen escaped. And the command-sending tools refuse an unencrypted broker and secrets in argv.
 * The log lines come from a real agent whose event log holds them; labels and events that no agent would send come
 * from whoever holds a device's broker credentials (`forger`), publishing what it likes.
 */
const ESC = '\u001b';
/** Clear the screen, set the terminal title, a one-byte C1 CSI, DEL and a right-to-left override. */
const HOSTILE = `${ESC}[2J${ESC}]0;pwned\u0007\u009b31m\u007f\u202egnp.exe`;
// eslint-disable-next-line no-control-regex -- looking for control characters is the test
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function fleetlet(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FLEETLET_BUNDLE, ...args], { env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe('fleet tools facing a hostile device', () => {
  let broker: TestBroker;
  let dir: { dir: string; cleanup: () => void };
  let keyFile: string;
  let device: TestDevice;
  let forger: Observer;

  beforeAll(async () => {
    broker = await startMosquitto();
    dir = tempDir('fleetlet-fleet-terminal-');
    keyFile = join(dir.dir, 'ops.key');
    const generated = generateSigningKey(keyFile, 'ops');
    device = await startTestDevice({
      brokerUrl: broker.url,
      dir: join(dir.dir, 'evil'),
      deviceId: 'evil',
      trustedKeys: [{ id: 'ops', publicKey: generated.publicKey }],
      eventLog: [{ kind: `before ${HOSTILE} after` }],
    });
    forger = await Observer.connect(broker.url, []);
    const now = new Date().toISOString();
    await forger.client.publishAsync('fleetlet/v1/devices/forged/presence', JSON.stringify({ schemaVersion: 1, state: 'online', bootSequence: 1, at: now, fleetletVersion: '0.1.0' }), {
      qos: 1,
      retain: true,
    });
    const inventory = {
      schemaVersion: 1,
      deviceId: 'forged',
      collectedAt: now,
      hardware: { model: 'test board', arch: 'amd64', cpuModel: 'test', cpuCores: 2, memoryTotalBytes: 1 << 30 },
      os: { distro: 'Debian', kernel: '6.1.0' },
      bootedAt: now,
      fleetletVersion: '0.1.0',
      labels: { site: HOSTILE.slice(0, 60) },
      groups: [],
      identity: {},
    };
    await forger.client.publishAsync('fleetlet/v1/devices/forged/inventory', JSON.stringify(inventory), { qos: 1, retain: true });
  });

  afterAll(async () => {
    await forger?.client.endAsync();
    await device?.stop();
    await broker?.close();
    dir?.cleanup();
  });

  it('devices prints labels with control characters and bidi overrides escaped, in the table and in JSON', async () => {
    const table = await fleetlet(['fleet', 'devices', '--broker', broker.url]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toContain('site=\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x7f\\u202egnp.exe');
    expect(table.stdout).not.toMatch(UNSAFE);
    const json = await fleetlet(['fleet', 'devices', '--json', '--broker', broker.url]);
    expect(json.stdout).not.toMatch(UNSAFE);
    // Still JSON, and still the device's own value once parsed.
    const listed = JSON.parse(json.stdout) as { deviceId: string; labels: { site?: string } }[];
    expect(listed.find((d) => d.deviceId === 'forged')?.labels.site).toBe(HOSTILE.slice(0, 60));
  });

  it('send prints the log lines a logs.collect brings back escaped', async () => {
    const run = await fleetlet(['fleet', 'send', 'logs.collect', '--device', 'evil', '--key', keyFile, '--wait', '20', '--broker', broker.url, '--allow-plaintext']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/ {2}evil \| \S+ before \\x1b\[2J\\x1b\]0;pwned\\x07\\x9b31m\\x7f\\u202egnp\.exe after \{\}\n/);
    expect(run.stdout).not.toMatch(UNSAFE);
  });

  it('watch prints a hostile event escaped, as text and as JSON lines', async () => {
    for (const json of [false, true]) {
      const watcher = spawn(process.execPath, [FLEETLET_BUNDLE, 'fleet', 'watch', '--duration', '20', ...(json ? ['--json'] : []), '--broker', broker.url], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      watcher.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      watcher.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => watcher.once('exit', (code) => resolve(code)));
      await waitFor(() => stderr.includes('watching'), 'the watcher to subscribe', 20_000);
      // Raw bytes for the text view; for JSON lines valid JSON, in which C1, DEL and bidi characters travel raw.
      const payload = json ? JSON.stringify({ kind: HOSTILE }) : `raw ${HOSTILE}`;
      await forger.client.publishAsync('fleetlet/v1/devices/forged/events', payload, { qos: 1 });
      await waitFor(() => stdout.includes('pwned'), 'the event in the watch', 20_000);
      watcher.kill('SIGINT');
      expect(await exited, stderr).toBe(0);
      expect(stdout).not.toMatch(UNSAFE);
      if (json) expect((JSON.parse(stdout.trim().split('\n').at(-1)!) as { payload: { kind: string } }).payload.kind).toBe(HOSTILE);
      else expect(stdout).toContain('\\x1b[2J');
    }
  });
});

describe('fleet tools that send commands', () => {
  let dir: { dir: string; cleanup: () => void };
  let keyFile: string;

  beforeAll(() => {
    dir = tempDir('fleetlet-fleet-send-');
    keyFile = join(dir.dir, 'ops.key');
    generateSigningKey(keyFile, 'ops');
  });

  afterAll(() => dir?.cleanup());

  it('send and rollout refuse a plain mqtt:// broker without --allow-plaintext, naming the flag', async () => {
    // Nothing listens on port 1: the refusal must come before any connection attempt.
    const send = await fleetlet(['fleet', 'send', 'ping', '--device', 'pi-1', '--key', keyFile, '--broker', 'mqtt://127.0.0.1:1']);
    expect(send.code).toBe(64);
    expect(send.stderr).toContain('--allow-plaintext');
    const rollout = await fleetlet(['fleet', 'rollout', 'k3s', '--to', 'v1.36.3+k3s1', '--state', join(dir.dir, 'r.json'), '--key', keyFile, '--broker', 'mqtt://127.0.0.1:1']);
    expect(rollout.code).toBe(64);
    expect(rollout.stderr).toContain('--allow-plaintext');
    // With the opt-in, the same command gets as far as the (absent) broker.
    const optedIn = await fleetlet(['fleet', 'send', 'ping', '--device', 'pi-1', '--key', keyFile, '--broker', 'mqtt://127.0.0.1:1', '--allow-plaintext']);
    // An absent broker is transient: EX_TEMPFAIL tells a script that trying again later may succeed.
    expect(optedIn.code).toBe(75);
    expect(optedIn.stderr).toContain('cannot connect');
  });

  it('send refuses a secret argument given on the command line, in --arg or in --args', async () => {
    const common = ['--device', 'pi-1', '--key', keyFile, '--broker', 'mqtts://127.0.0.1:1'];
    const arg = await fleetlet(['fleet', 'send', 'k3s.configure', '--arg', 'joinToken=K10secret::server:abc', ...common]);
    expect(arg.code).toBe(64);
    expect(arg.stderr).toContain('joinToken is secret: give it with --secret-file joinToken=FILE, which seals it to the device');
    const args = await fleetlet(['fleet', 'send', 'k3s.configure', '--args', '{"joinToken":"K10secret::server:abc"}', ...common]);
    expect(args.code).toBe(64);
    expect(args.stderr).toContain('--secret-file joinToken=FILE');
    expect(arg.stderr + args.stderr).not.toContain('K10secret');
    // Given with --secret-file it passes the check and goes on to connect for the device's seal key (nothing listens).
    const tokenFile = join(dir.dir, 'token');
    writeFileSync(tokenFile, 'K10secret::server:abc\n', { mode: 0o600 });
    const plainFile = await fleetlet(['fleet', 'send', 'k3s.configure', '--arg-file', `joinToken=${tokenFile}`, ...common]);
    expect(plainFile.code).toBe(64);
    const fromFile = await fleetlet(['fleet', 'send', 'k3s.configure', '--secret-file', `joinToken=${tokenFile}`, ...common]);
    expect(fromFile.code).toBe(75);
    expect(fromFile.stderr).toContain('cannot connect');
  });
});
