import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checksumFile, sha256, startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { shutDown, supervisedFake } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const run = promisify(execFile);
const VERSION = 'v1.36.3+k3s1';
const BINARY = fakeK3sBinary(512 * 1024, 'cli');

let server: ReleaseServer;
let dir: string;
let cleanup: () => void;
let configFile: string;
let binaryPath: string;
let stateDir: string;

beforeAll(async () => {
  server = await startReleaseServer();
});
afterAll(async () => {
  await server.close();
});
beforeEach(async () => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-cli-'));
  binaryPath = join(dir, 'bin', 'k3s');
  stateDir = join(dir, 'state');
  configFile = join(dir, 'config.yaml');
  writeFileSync(
    configFile,
    [
      'device:',
      '  id: pi-cli-test',
      'broker:',
      `  url: mqtt://127.0.0.1:${await freePort()}`,
      '  allowPlaintext: true',
      'k3s:',
      '  serverUrl: https://10.0.0.1:6443',
      '  token: K10abc::node:secret',
      `  binaryPath: ${binaryPath}`,
      `  dataDir: ${join(dir, 'data')}`,
      `  artifactUrl: ${server.artifactUrl}`,
      `  channelUrl: ${server.channelUrl}`,
      '  allowInsecureMirror: true',
      `stateDir: ${stateDir}`,
      'telemetry:',
      '  http:',
      '    enabled: false',
      'log:',
      '  level: warn',
      '',
    ].join('\n'),
  );
});
afterEach(() => cleanup());

async function fleetlet(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [FLEETLET_BUNDLE, ...args, '--config', configFile], {
      env: { ...process.env, PATH: join(dir, 'no-such-path') },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('fleetlet k3s install', () => {
  it('installs a version from the mirror and links the tools', async () => {
    server.publish(VERSION, { k3s: BINARY });
    const result = await fleetlet('k3s', 'install', '--release', VERSION);
    expect(result).toMatchObject({ code: 0 });
    expect(result.stdout).toContain(`installed k3s ${VERSION} at ${binaryPath}`);
    expect(result.stdout).toContain(`linked ${join(dir, 'bin', 'kubectl')}`);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY));
  });

  it('shows download progress when run from a terminal', async (context) => {
    if (!existsSync('/usr/bin/script')) return context.skip(); // util-linux script(1) gives the CLI a pty
    server.publish(VERSION, { k3s: fakeK3sBinary(8 * 1024 * 1024, 'tty') });
    const command = [process.execPath, FLEETLET_BUNDLE, 'k3s', 'install', '--release', VERSION, '--config', configFile]
      .map((part) => `'${part}'`)
      .join(' ');
    const { stdout } = await run('/usr/bin/script', ['-qec', command, '/dev/null'], { timeout: 60_000 });
    expect(stdout).toMatch(/downloading k3s: \d+\.\d \/ 8\.0 MiB/);
    expect(stdout).toContain('downloading k3s: 8.0 / 8.0 MiB');
    expect(stdout).toContain(`installed k3s ${VERSION}`);
  });

  it('refuses a binary whose checksum does not match, with a clear message', async () => {
    server.publish(VERSION, { k3s: BINARY }, { checksums: checksumFile({ k3s: 'something else' }) });
    const result = await fleetlet('k3s', 'install', '--release', VERSION);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('does not match its sha256');
    expect(existsSync(binaryPath)).toBe(false);
  });

  it('exits 75 (try again later) when the mirror cannot be reached, and nothing is installed', async () => {
    const closedPort = await freePort();
    const result = await fleetlet('k3s', 'install', '--release', VERSION, '--set', `k3s.artifactUrl=http://127.0.0.1:${closedPort}/releases`);
    expect(result.code).toBe(75);
    expect(result.stderr).toContain('cannot download');
    expect(existsSync(binaryPath)).toBe(false);
  });

  it('installs from an air-gap folder', async () => {
    const usb = join(dir, 'usb');
    mkdirSync(usb);
    const arch = { x64: 'amd64', arm64: 'arm64', arm: 'arm' }[process.arch as 'x64']!;
    const name = { amd64: 'k3s', arm64: 'k3s-arm64', arm: 'k3s-armhf' }[arch]!;
    writeFileSync(join(usb, name), BINARY);
    writeFileSync(join(usb, `sha256sum-${arch}.txt`), checksumFile({ [name]: BINARY }));
    const result = await fleetlet('k3s', 'install', '--from', usb);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY));
  });
});

describe('fleetlet k3s status and logs', () => {
  it('shows a rejected node password with its fix, and the newest log lines', async () => {
    const fake = await supervisedFake(dir, { FAKE_K3S_SERVER: 'password-rejected' }, { workDir: join(stateDir, 'node-agent') });
    await fake.supervisor.start();
    try {
      await waitFor(() => fake.supervisor.status().problem !== undefined, 'the problem', 30_000);
      const status = await fleetlet('k3s', 'status');
      expect(status.code).toBe(0);
      expect(status.stdout).toMatch(/process:\s+running, pid \d+/);
      expect(status.stdout).toContain('state:    starting');
      expect(status.stdout).toContain('problem:  k3s.password-rejected');
      expect(status.stdout).toContain('kubectl delete node');

      const logs = await fleetlet('k3s', 'logs', '-n', '2');
      expect(logs.code).toBe(0);
      expect(logs.stdout.trim().split('\n')).toHaveLength(2);
      expect(logs.stdout).toContain('Node password rejected');
    } finally {
      await shutDown(fake);
    }
    const after = JSON.parse((await fleetlet('k3s', 'status', '--json')).stdout) as { running: boolean; status: { state: string } };
    expect(after).toMatchObject({ running: false, held: true, status: { state: 'stopped' } });
  });
});

describe('the agent without a k3s binary', () => {
  it('keeps running and reports "not installed" instead of crashing', async () => {
    const agent = spawn(process.execPath, [FLEETLET_BUNDLE, 'agent', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    agent.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => agent.once('exit', (code) => resolve(code)));
    try {
      const statusFile = join(stateDir, 'node-agent', 'agent-status.json');
      await waitFor(() => existsSync(statusFile) && readFileSync(statusFile, 'utf8').includes('not-installed'), () => `not-installed status (${stderr})`, 30_000);
      const status = await fleetlet('k3s', 'status');
      expect(status.stdout).toContain(`not installed at ${binaryPath}`);
      expect(status.stdout).toContain('state:    not-installed');
      expect(agent.exitCode).toBeNull();
    } finally {
      agent.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    const db = new BetterSqlite3(join(stateDir, 'fleetlet.db'), { readonly: true });
    const kinds = (db.prepare('SELECT kind FROM event_log').all() as { kind: string }[]).map((row) => row.kind);
    db.close();
    expect(kinds).toContain('k3s.not-installed');
  });
});
