import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { connectAsync, type IClientOptions } from 'mqtt';
import { createCa, issueCert, type KeyPair } from '../helpers/certs.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from '../helpers/shipped-broker.js';

/**
 * The shipped broker's two listeners: devices, whose client id is forced to their certificate's name, and
 * operators, with certificates from a CA of their own, who keep the client id their tool chooses.
 */
const ROOT = 'fleetlet/v1';

describe.skipIf(!mosquittoAvailable())('the shipped broker config: operator listener', () => {
  let broker: TestBroker;
  let operatorPort: number;
  let dir: string;
  let cleanupDir: () => void;
  let ca: KeyPair;
  let devA: KeyPair;
  let devB: KeyPair;
  let operator: KeyPair;
  let hubIdentity: KeyPair;

  beforeAll(async () => {
    const temp = tempDir('fleetlet-operators-');
    ({ dir } = temp);
    cleanupDir = temp.cleanup;
    ca = createCa(dir, 'fleet-ca');
    const operatorCa = createCa(dir, 'operator-ca-root');
    const server = issueCert(ca, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
    copyFileSync(ca.cert, join(dir, 'ca.crt'));
    copyFileSync(operatorCa.cert, join(dir, 'operator-ca.crt'));
    copyFileSync(server.cert, join(dir, 'broker.crt'));
    copyFileSync(server.key, join(dir, 'broker.key'));
    copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(dir, 'acl'));
    // mosquitto started as root reads these after dropping to its own user.
    chmodSync(dir, 0o755);
    for (const name of ['ca.crt', 'operator-ca.crt', 'broker.crt', 'broker.key', 'acl']) chmodSync(join(dir, name), 0o644);
    devA = issueCert(ca, dir, 'dev-a');
    devB = issueCert(ca, dir, 'dev-b');
    operator = issueCert(operatorCa, dir, 'fleet-operator');
    hubIdentity = issueCert(operatorCa, dir, 'fleetlet-hub');
    const shipped = shippedMosquittoConfig(dir);
    expect(shipped.operatorListenerLines).toContain('use_username_as_clientid false');
    operatorPort = await freePort();
    broker = await startMosquitto({
      globalLines: shipped.globalLines,
      listenerLines: shipped.listenerLines,
      extraListeners: [{ port: operatorPort, lines: shipped.operatorListenerLines }],
    });
  });

  afterAll(async () => {
    await broker?.close();
    cleanupDir?.();
  });

  const asClient = (pair: KeyPair, extra: IClientOptions = {}): IClientOptions => ({
    ca: readFileSync(ca.cert),
    cert: readFileSync(pair.cert),
    key: readFileSync(pair.key),
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...extra,
  });
  const deviceUrl = () => `mqtts://127.0.0.1:${broker.port}`;
  const operatorUrl = () => `mqtts://127.0.0.1:${operatorPort}`;
  const operatorFlags = () => ['--broker', operatorUrl(), '--ca-file', ca.cert, '--cert-file', operator.cert, '--tls-key-file', operator.key];

  async function device(pair: KeyPair, clientId: string) {
    const observer = await Observer.connect(deviceUrl(), [], asClient(pair, { clientId }));
    let closed = false;
    observer.client.on('close', () => (closed = true));
    onTestFinished(() => observer.close());
    return { client: observer.client, closed: () => closed };
  }

  it('two operator tools with the same certificate both stay connected', async () => {
    const devAConn = await device(devA, 'dev-a');
    const watcher = spawn(process.execPath, [FLEETLET_BUNDLE, 'fleet', 'watch', '--duration', '30', ...operatorFlags()], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    watcher.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    watcher.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => watcher.once('exit', (code) => resolve(code)));
    onTestFinished(async () => {
      if (watcher.exitCode === null) watcher.kill('SIGINT');
      await exited;
    });
    await waitFor(() => stderr.includes('watching'), 'the watcher to subscribe', 20_000);

    // A second tool with the same certificate connects, works and leaves while the watcher runs.
    const devices = runCli(['fleet', 'devices', ...operatorFlags()]);
    expect(devices.code, devices.stderr).toBe(0);

    // The watcher still has its session: it sees an event published after the second tool connected.
    await devAConn.client.publishAsync(`${ROOT}/devices/dev-a/events`, 'after-the-second-tool', { qos: 1 });
    await waitFor(() => stdout.includes('after-the-second-tool'), 'the watcher to see the event', 20_000);
    watcher.kill('SIGINT');
    expect(await exited, stderr).toBe(0);
  });

  it('refuses a device certificate on the operator listener, so a device cannot claim another device\'s client id there', async () => {
    const devAConn = await device(devA, 'dev-a');
    await expect(connectAsync(operatorUrl(), asClient(devB, { clientId: 'dev-a' }))).rejects.toThrow();
    // On the device listener the broker names dev-b's connection dev-b whatever it claims: dev-a stays.
    const intruder = await device(devB, 'dev-a');
    await intruder.client.publishAsync(`${ROOT}/devices/dev-b/status`, 'legit', { qos: 1 });
    await devAConn.client.publishAsync(`${ROOT}/devices/dev-a/status`, 'still-here', { qos: 1 });
    expect(devAConn.closed()).toBe(false);
    expect(devAConn.client.connected).toBe(true);
  });

  it("lets the hub publish a rollout's signed commands to a device's command topic, and nothing into a device's reports", async () => {
    const devAConn = await device(devA, 'dev-a');
    const received: string[] = [];
    devAConn.client.on('message', (topic, payload) => received.push(`${topic} ${payload.toString()}`));
    await devAConn.client.subscribeAsync(`${ROOT}/devices/dev-a/commands`, { qos: 1 });
    const watcher = await Observer.connect(operatorUrl(), [`${ROOT}/devices/dev-a/results`], asClient(operator, { clientId: 'acl-watcher' }));
    onTestFinished(() => watcher.close());
    const hub = await connectAsync(operatorUrl(), asClient(hubIdentity, { clientId: 'fleetlet-hub-acl-rollouts' }));
    onTestFinished(() => hub.endAsync());
    await hub.publishAsync(`${ROOT}/devices/dev-a/results`, 'forged-result', { qos: 1 });
    await hub.publishAsync(`${ROOT}/devices/dev-a/commands`, 'signed-envelope', { qos: 1 });
    await waitFor(() => received.includes(`${ROOT}/devices/dev-a/commands signed-envelope`), 'dev-a to get the command', 20_000);
    // The results topic would have carried the forged result before the command: the broker dropped it.
    expect(watcher.messages.map((m) => m.text)).not.toContain('forged-result');
  });
});
