import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { stringify } from 'yaml';
import { generateSigningKey } from '../../src/fleet/keygen.js';
import { InventorySchema } from '../../src/protocol/inventory.js';
import { waitFor } from '../helpers/wait.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { isolatedK3s, savedK3sState, startAgentWithFakeK3s } from '../helpers/agent-config.js';
import { Observer } from '../helpers/observer.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

/**
 * A join token rotated by `fleetlet fleet send k3s.configure --secret-file`: sealed on the operator's side to the key
 * the real agent published in its inventory, carried by the real mosquitto, opened by the agent and handed to its
 * (fake) k3s. Nobody on the broker sees it in clear.
 */
const NEW_TOKEN = 'K10sealed-rotation-token-0123456789abcdef::node:rotated-secret-value';

describe('a sealed join token through the real agent', () => {
  it('k3s.configure with a sealed token reaches k3s, and the token never crosses the broker in clear', async () => {
    const { dir, cleanup } = tempDir('fleetlet-sealed-e2e-');
    onTestFinished(cleanup);
    const broker = await startMosquitto();
    onTestFinished(() => broker.close());
    const binaryPath = join(dir, 'bin', 'k3s');
    mkdirSync(dirname(binaryPath), { recursive: true });
    writeFileSync(binaryPath, fakeK3sBinary(64 * 1024, 'installed'));
    chmodSync(binaryPath, 0o755);
    const records = join(dir, 'records');
    mkdirSync(records);
    const keyFile = join(dir, 'ops.key');
    const key = generateSigningKey(keyFile, 'ops');
    const healthzPort = await freePort();
    const configFile = join(dir, 'config.yaml');
    writeFileSync(
      configFile,
      stringify({
        device: { id: 'pi-sealed' },
        broker: { url: broker.url, allowPlaintext: true, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
        k3s: await isolatedK3s(dir, binaryPath, { nodeName: 'pi-sealed', kubeletArgs: [`healthz-port=${healthzPort}`] }),
        commands: { trustedKeys: [{ id: 'ops', publicKey: key.publicKey }], k3sUpgrade: { healthTimeoutSeconds: 10 } },
        stateDir: join(dir, 'state'),
        telemetry: { http: { enabled: false } },
        log: { level: 'info' },
      }),
    );
    // Everything that crosses the broker, commands included.
    const wire = await Observer.connect(broker.url, ['fleetlet/v1/#']);
    onTestFinished(() => wire.close());
    const agent = startAgentWithFakeK3s(configFile, dir, healthzPort, { FAKE_K3S_RECORD_DIR: records });
    onTestFinished(agent.stop);
    await waitFor(() => savedK3sState(join(dir, 'state')) === 'running-healthy', () => `k3s healthy (${agent.output().slice(-2000)})`, 30_000);
    const inventory = InventorySchema.parse(wire.messages.find((m) => m.topic.endsWith('/pi-sealed/inventory'))?.json);
    expect(inventory.sealKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(readFileSync(join(dir, 'state', 'seal-key.pem'), 'utf8')).toContain('PRIVATE KEY');

    const tokenFile = join(dir, 'new-token');
    writeFileSync(tokenFile, `${NEW_TOKEN}\n`, { mode: 0o600 });
    const send = (...extra: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const args = ['fleet', 'send', 'k3s.configure', '--wait', '60', '--key', keyFile, '--broker', broker.url, '--allow-plaintext', ...extra];
        execFile(process.execPath, [FLEETLET_BUNDLE, ...args], { timeout: 90_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
        );
      });
    const sent = await send('--device', 'pi-sealed', '--secret-file', `joinToken=${tokenFile}`, '--arg', 'labels={"zone":"north"}');
    expect(sent.code, sent.stdout + sent.stderr).toBe(0);
    expect(sent.stdout).toMatch(/succeeded: applied labels, joinToken; k3s healthy/);

    // k3s was restarted with the new token: the fake records each start, with the token's length (never the token).
    const starts = readdirSync(records).map((name) => JSON.parse(readFileSync(join(records, name), 'utf8')) as { tokenLength?: number; pid: number });
    expect(starts.map((start) => start.tokenLength)).toContain(NEW_TOKEN.length);
    expect(starts.map((start) => start.tokenLength)).toContain('K10abc::node:test-join-token'.length);

    const command = wire.messages.find((m) => m.topic === 'fleetlet/v1/devices/pi-sealed/commands');
    expect(command?.text).toContain('X25519-HKDF-SHA256-A256GCM');
    expect(wire.messages.map((m) => m.text).join('\n')).not.toContain('rotated-secret-value');
    expect(agent.output()).not.toContain('rotated-secret-value');
    expect(sent.stdout + sent.stderr).not.toContain('rotated-secret-value');

    // The operator tool refuses what would put the token on the wire in clear, or in front of a whole group.
    const plain = await send('--device', 'pi-sealed', '--arg-file', `joinToken=${tokenFile}`);
    expect(plain.code).toBe(64);
    expect(plain.stderr).toContain('joinToken is secret: give it with --secret-file');
    const group = await send('--group', 'canary', '--secret-file', `joinToken=${tokenFile}`);
    expect(group.code).toBe(64);
    expect(group.stderr).toContain('sealed to one device');
    expect(wire.messages.map((m) => m.text).join('\n')).not.toContain('rotated-secret-value');
  }, 180_000);
});
