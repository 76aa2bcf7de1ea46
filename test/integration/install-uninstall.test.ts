import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { provision } from '../../src/cli/provision.js';
import { k3sAgentPids, runUninstall } from '../../src/cli/uninstall.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';
import { bundleLauncher } from '../helpers/elf-programs.js';

const FAKE_K3S = join(REPO_ROOT, 'test/fixtures/fake-k3s/k3s.js');
/** existsSync follows links; the enable link points at /etc on the device, so it dangles in a test root. */
const present = (path: string) => {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
};

/** A device root with fleetlet provisioned, a node identity, state, and a running (fake) k3s agent. */
async function installedDevice(onSigterm = 'exit') {
  const { dir: root, cleanup } = tempDir('fleetlet-uninstall-');
  const config = join(root, 'input-config.yaml');
  writeFileSync(config, 'broker:\n  url: mqtts://broker.example.test:8883\nk3s:\n  serverUrl: https://k3s.example.test:6443\n');
  const inputs = tempDir('fleetlet-uninstall-inputs-');
  onTestFinished(inputs.cleanup);
  const binary = bundleLauncher(inputs.dir);
  await provision({ root, binary, arch: process.arch, config, trustAnchors: [], enable: true, allowIdentity: false });
  mkdirSync(join(root, 'etc/rancher/node'), { recursive: true });
  writeFileSync(join(root, 'etc/rancher/node/password'), `${'ab'.repeat(16)}\n`);
  mkdirSync(join(root, 'var/lib/fleetlet'), { recursive: true });
  writeFileSync(join(root, 'var/lib/fleetlet/fleetlet.db'), 'state');
  const k3sBinary = join(root, 'usr/local/bin/k3s');
  writeFileSync(k3sBinary, `#!/usr/bin/env node\nimport ${JSON.stringify(FAKE_K3S)};\n`);
  chmodSync(k3sBinary, 0o755);
  const k3s: ChildProcess = spawn(k3sBinary, ['agent', '--server', 'https://127.0.0.1:6443', '--data-dir', join(root, 'var/lib/rancher/k3s')], {
    env: { ...process.env, K3S_TOKEN: 'test', FAKE_K3S_HEALTHZ: 'none', FAKE_K3S_ON_SIGTERM: onSigterm, FAKE_K3S_NODE_CONFIG_PATH: join(root, 'k3s-node') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  k3s.stdout!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  k3s.stderr!.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => k3s.once('exit', (code, signal) => resolve({ code, signal })));
  onTestFinished(() => {
    k3s.kill('SIGKILL');
    cleanup();
  });
  // Up, with its signal handlers in place: the agent logs this once it has joined.
  await waitFor(() => log.includes('Remotedialer connected'), 'the k3s agent to be running');
  expect(k3sAgentPids(k3sBinary)).toEqual([k3s.pid]);
  return { root, k3s, exited };
}

async function uninstallCli(root: string, flags: Partial<{ purge: boolean; removeNodeIdentity: boolean }> = {}, stopTimeoutMs = 10_000) {
  let stdout = '';
  let stderr = '';
  const io = { stdout: (t: string) => void (stdout += t), stderr: (t: string) => void (stderr += t), env: {} };
  const selection = { path: join(root, 'etc/fleetlet/config.yaml'), explicit: true, sets: [] };
  const code = await runUninstall({ selection, root, purge: false, removeNodeIdentity: false, ...flags }, io, stopTimeoutMs);
  return { code, stdout, stderr };
}

describe('fleetlet uninstall', () => {
  it('stops k3s with one SIGTERM, removes unit, link and binary, keeps node identity, state and config', async () => {
    const { root, exited } = await installedDevice();
    const result = await uninstallCli(root);
    expect(result.code).toBe(0);
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(result.stdout).toMatch(/^stopped k3s agent \(pid \d+\)$/m);
    for (const path of ['etc/systemd/system/fleetlet.service', 'etc/systemd/system/multi-user.target.wants/fleetlet.service', 'usr/local/bin/fleetlet']) {
      expect(present(join(root, path)), path).toBe(false);
    }
    for (const path of ['etc/rancher/node/password', 'var/lib/fleetlet/fleetlet.db', 'etc/fleetlet/config.yaml', 'usr/local/bin/k3s']) {
      expect(existsSync(join(root, path)), path).toBe(true);
    }
    expect(result.stdout).toContain('kept /etc/rancher/node');
  });

  it('--purge removes config, state and k3s; --remove-node-identity removes /etc/rancher/node', async () => {
    const { root } = await installedDevice();
    expect((await uninstallCli(root, { purge: true, removeNodeIdentity: true })).code).toBe(0);
    for (const path of ['etc/fleetlet', 'var/lib/fleetlet', 'usr/local/bin/k3s', 'etc/rancher/node']) expect(existsSync(join(root, path)), path).toBe(false);
  });

  it('reports a k3s that does not stop, and never sends it a second SIGTERM', async () => {
    const { root, k3s } = await installedDevice('hang');
    const result = await uninstallCli(root, {}, 1500);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`k3s agent still running after 1500 ms: pid ${k3s.pid}`);
    // A second SIGTERM would have made the fake k3s exit 1 ("Second shutdown signal received").
    expect(k3s.exitCode).toBeNull();
  });
});
