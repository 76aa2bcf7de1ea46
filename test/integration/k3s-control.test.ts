import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildAgentInvocation } from '../../src/k3s/args.js';
import { SupervisedK3sControl } from '../../src/k3s/control.js';
import { ChecksumMismatchError } from '../../src/k3s/errors.js';
import { K3sInstaller } from '../../src/k3s/installer.js';
import { NodeSettingsFile, withNodeSettings } from '../../src/k3s/node-settings.js';
import { TOKEN_FILE } from '../../src/k3s/token-file.js';
import { FAKE_K3S, fakeK3sBinary } from '../helpers/fake-k3s.js';
import { shutDown, supervisedFake, type SupervisedFake } from '../helpers/k3s-supervisor.js';
import { checksumFile, sha256, startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { tempDir } from '../helpers/paths.js';

const VERSION = 'v1.36.3+k3s1';
const NEW_TOKEN = 'K10feed::node:rotated-token';

let server: ReleaseServer;
let dir: string;
let cleanup: () => void;
let fake: SupervisedFake;
let settings: NodeSettingsFile;
let control: SupervisedK3sControl;

beforeAll(async () => {
  server = await startReleaseServer();
});
afterAll(async () => {
  await server.close();
});
beforeEach(async () => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-control-'));
  settings = new NodeSettingsFile(join(dir, 'work', 'node-settings.json'));
  const k3s = ConfigSchema.parse({
    broker: { url: 'mqtts://broker.example:8883' },
    k3s: { serverUrl: 'https://10.0.0.1:6443', token: 'K10abc::node:original', dataDir: join(dir, 'data'), nodeName: 'pi-01', nodeLabels: { role: 'edge' } },
  }).k3s;
  // No client load balancer: it would need a port of its own per test.
  fake = await supervisedFake(dir, {}, {
    invocation: () => buildAgentInvocation({ ...withNodeSettings(k3s, settings.load()), disableApiserverLb: true }),
  });
  const installer = new K3sInstaller({
    binaryPath: join(dir, 'bin', 'k3s'),
    arch: 'amd64',
    artifactUrl: server.artifactUrl,
    channel: 'stable',
    channelUrl: server.channelUrl,
  });
  control = new SupervisedK3sControl(fake.supervisor, installer, settings, FAKE_K3S, 50);
  await fake.supervisor.start();
});
afterEach(async () => {
  await shutDown(fake);
  cleanup();
});

function lastArgv(): string[] {
  const pid = fake.supervisor.status().pid!;
  return (JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as { argv: string[] }).argv;
}

describe('the k3s control handle', () => {
  it('waits for health, restarts on request and reports the version', async () => {
    expect(await control.waitHealthy(30_000, new AbortController().signal)).toEqual({ healthy: true });
    const before = fake.supervisor.status().pid;
    await control.restart();
    expect(await control.waitHealthy(30_000, new AbortController().signal)).toEqual({ healthy: true });
    expect(fake.supervisor.status().pid).not.toBe(before);
    expect(await control.installedVersion()).toBe(VERSION);
    expect((await control.recentLogLines(500)).some((line) => line.includes('Successfully registered node'))).toBe(true);
  });

  it('says why k3s is not healthy when it times out', async () => {
    await control.waitHealthy(30_000, new AbortController().signal);
    await control.applyNodeSettings('cmd-1', { serverUrl: 'https://10.0.0.9:6443' });
    fake.script([{ server: 'password-rejected' }]);
    await control.restart();
    const verdict = await control.waitHealthy(1_500, new AbortController().signal);
    expect(verdict).toMatchObject({ healthy: false, reason: expect.stringContaining('k3s.password-rejected') });
  });

  it('counts k3s as healthy for an upgrade only when it runs the version asked for', async () => {
    const signal = new AbortController().signal;
    expect(await control.waitHealthy(30_000, signal, VERSION)).toEqual({ healthy: true });
    // Healthy, but still the binary read before a swap: not a verdict on the new version.
    const verdict = await control.waitHealthy(500, signal, 'v1.37.0+k3s1');
    expect(verdict).toMatchObject({ healthy: false, reason: expect.stringContaining(`k3s ${VERSION} runs, not v1.37.0+k3s1`) });
  });

  it('applies node settings on the next start and reverts them', async () => {
    await control.waitHealthy(30_000, new AbortController().signal);
    await control.applyNodeSettings('cmd-2', { labels: { role: 'gateway' }, taints: ['edge=true:NoSchedule'], joinToken: NEW_TOKEN });
    expect(statSync(join(dir, 'work', 'node-settings.json')).mode & 0o777).toBe(0o600);
    await control.restart();
    await control.waitHealthy(30_000, new AbortController().signal);
    expect(lastArgv()).toEqual(expect.arrayContaining(['role=gateway', 'edge=true:NoSchedule']));
    expect(lastArgv().join(' ')).not.toContain('rotated-token');
    expect(readFileSync(join(dir, 'work', TOKEN_FILE), 'utf8').trim()).toBe(NEW_TOKEN);
    expect(readFileSync(`/proc/${fake.supervisor.status().pid}/environ`, 'utf8')).not.toContain(NEW_TOKEN);

    await control.revertNodeSettings('cmd-2');
    await control.restart();
    await control.waitHealthy(30_000, new AbortController().signal);
    expect(lastArgv()).toEqual(expect.arrayContaining(['role=edge']));
    expect(lastArgv()).not.toContain('edge=true:NoSchedule');
  });

  it('fetches a verified release next to the binary, and refuses a corrupt one', async () => {
    const binary = fakeK3sBinary(300_000, 'control');
    server.publish(VERSION, { k3s: binary });
    const fetched = await control.fetchRelease({ version: VERSION });
    expect(fetched).toMatchObject({ sha256: sha256(binary), bytes: binary.length });
    expect(fetched.path.startsWith(join(dir, 'bin'))).toBe(true);
    expect(sha256(readFileSync(fetched.path))).toBe(sha256(binary));

    server.publish('v1.36.4+k3s1', { k3s: binary }, { checksums: checksumFile({ k3s: 'tampered' }) });
    await expect(control.fetchRelease({ version: 'v1.36.4+k3s1' })).rejects.toThrow(ChecksumMismatchError);
    await expect(control.fetchRelease({ version: VERSION, sha256: '0'.repeat(64) })).rejects.toThrow(ChecksumMismatchError);
  });
});
