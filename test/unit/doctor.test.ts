import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runDoctor } from '../../src/cli/doctor.js';
import type { CheckResult, DoctorContext } from '../../src/cli/doctor/check.js';
import type { NetworkProbe } from '../../src/cli/doctor/network-probe.js';
import { FLEETLET_BUNDLE, REPO_ROOT, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';

const FIXTURES = join(REPO_ROOT, 'test/fixtures/doctor');
const GiB = 1024 ** 3;
/** Network checks have their own tests against real sockets; here every endpoint answers. */
const reachable: NetworkProbe = { tcp: async () => ({ ok: true }), tls: async () => ({ ok: true }), mqtt: async () => ({ ok: true }) };


/** A writable copy of a fixture root, so a test can change modes and files without touching the fixture. */
function rootFrom(fixture: string): string {
  const { dir, cleanup } = tempDir('fleetlet-doctor-');
  onTestFinished(cleanup);
  cpSync(join(FIXTURES, fixture), dir, { recursive: true, verbatimSymlinks: true });
  return dir;
}

const CONFIG = [
  'device: { id: pi-01 }',
  'broker: { url: "mqtts://broker.example.test:8883" }',
  'k3s: { serverUrl: "https://k3s.example.test:6443" }',
  'stateDir: /var/lib/fleetlet',
].join('\n');

async function doctor(root: string, overrides: Partial<DoctorContext> = {}, configText = CONFIG) {
  const configFile = join(root, 'doctor-config.yaml');
  writeFileSync(configFile, `${configText}\n`);
  let stdout = '';
  const io = { stdout: (text: string) => void (stdout += text), stderr: () => {}, env: {} };
  const selection = { path: configFile, explicit: true, sets: [] };
  const context = { arch: 'arm64', probe: reachable, now: new Date('2026-06-01T12:00:00Z'), freeBytes: () => 20 * GiB, ...overrides };
  const code = await runDoctor({ selection, root, json: true }, io, context);
  const results = JSON.parse(stdout) as CheckResult[];
  const of = (check: string) => results.filter((r) => r.check === check);
  return { code, results, of };
}

describe('fleetlet doctor on a Raspberry Pi OS bookworm image fresh from the imager', () => {
  it('fails on the missing memory cgroup and names /boot/firmware/cmdline.txt', async () => {
    const { code, of } = await doctor(rootFrom('pi-bookworm-not-ready'));
    expect(code).toBe(1);
    expect(of('cgroups')).toEqual([
      {
        check: 'cgroups',
        status: 'fail',
        summary: 'cgroup v2 without the memory controller: k3s will not start',
        fix: 'append " cgroup_memory=1 cgroup_enable=memory" to the end of the single line in /boot/firmware/cmdline.txt, then reboot',
      },
    ]);
  });

  it('warns about swap, the factory hostname, an unloaded br_netfilter and an unconfirmed clock, each with its fix', async () => {
    const { of } = await doctor(rootFrom('pi-bookworm-not-ready'));
    expect(of('swap')[0]).toMatchObject({ status: 'warn', fix: 'sudo dphys-swapfile swapoff && sudo systemctl disable dphys-swapfile' });
    expect(of('node-name')[0]).toMatchObject({ status: 'warn', fix: 'sudo hostnamectl set-hostname <unique-name>, or set k3s.withNodeId: true' });
    expect(of('kernel-modules').map((r) => [r.status, r.summary])).toEqual([
      ['pass', 'overlay is loaded'],
      ['warn', 'br_netfilter is not loaded (the fleetlet unit loads it at start)'],
    ]);
    expect(of('kernel-modules')[1]!.fix).toBe('sudo modprobe br_netfilter');
    expect(of('clock')[0]!.status).toBe('warn');
    expect(of('platform')).toEqual([{ check: 'platform', status: 'pass', summary: 'linux arm64, Debian GNU/Linux 12 (bookworm)' }]);
  });

  it('accepts the hostname once k3s appends a node id', async () => {
    const withNodeId = CONFIG.replace('k3s: { serverUrl: "https://k3s.example.test:6443" }', 'k3s: { serverUrl: "https://k3s.example.test:6443", withNodeId: true }');
    const { of } = await doctor(rootFrom('pi-bookworm-not-ready'), {}, withNodeId);
    expect(of('node-name')[0]!.status).toBe('pass');
  });
});

describe('fleetlet doctor on Raspberry Pi OS bullseye with cgroup v1', () => {
  it('names the old /boot/cmdline.txt, and fails on a kernel without br_netfilter', async () => {
    const { code, of } = await doctor(rootFrom('pi-bullseye-cgroup-v1'), { arch: 'arm' });
    expect(code).toBe(1);
    expect(of('cgroups')[0]).toMatchObject({ status: 'fail', summary: 'cgroup v1 without the memory controller: k3s will not start' });
    expect(of('cgroups')[0]!.fix).toContain('/boot/cmdline.txt,');
    expect(of('kernel-modules')[1]).toMatchObject({ status: 'fail', fix: 'install a kernel with br_netfilter (CONFIG_BRIDGE_NETFILTER)' });
    expect(of('netfilter')[0]).toMatchObject({ status: 'pass', summary: 'kernel has ip_tables; no host iptables, k3s uses its bundled one' });
    expect(of('platform')[0]!.summary).toBe('linux armv7, Raspbian GNU/Linux 11 (bullseye)');
    expect(of('platform')[1]).toMatchObject({ status: 'warn', summary: expect.stringContaining('gets no security fixes') });
    expect(of('platform')[1]!.fix).toContain('arm64 binary');
    expect(of('swap')[0]!.status).toBe('pass');
  });
});

describe('fleetlet doctor on a ready amd64 edge PC', () => {
  it('passes every check and exits 0', async () => {
    const { code, results, of } = await doctor(rootFrom('amd64-ready'), { arch: 'x64' });
    expect(results.filter((r) => r.status !== 'pass')).toEqual([]);
    expect(code).toBe(0);
    expect(of('netfilter')[0]!.summary).toBe('kernel has nf_tables; host iptables uses the nft backend');
    expect(of('kernel-modules').map((r) => r.summary)).toEqual(['overlay is built-in', 'br_netfilter is loaded']);
  });

  it('fails when others can enter the state dir, and passes once it is 0700', async () => {
    const root = rootFrom('amd64-ready');
    const stateDir = join(root, 'var/lib/fleetlet');
    mkdirSync(stateDir, { recursive: true });
    chmodSync(stateDir, 0o755);
    expect((await doctor(root, { arch: 'x64' })).of('state-dir')[0]).toMatchObject({ status: 'fail', fix: 'sudo chmod 700 /var/lib/fleetlet' });
    chmodSync(stateDir, 0o700);
    expect((await doctor(root, { arch: 'x64' })).of('state-dir')[0]!.status).toBe('pass');
  });

  it('checks free space on the state dir and the k3s data dir: fail below 1 GiB, warn below 4 GiB', async () => {
    const root = rootFrom('amd64-ready');
    const low = await doctor(root, { arch: 'x64', freeBytes: () => 0.5 * GiB });
    expect(low.of('disk').map((r) => [r.status, r.summary])).toEqual([
      ['fail', '0.5 GiB free for /var/lib/fleetlet: less than 1 GiB'],
      ['fail', '0.5 GiB free for /var/lib/rancher/k3s: less than 1 GiB'],
    ]);
    expect(low.code).toBe(1);
    expect((await doctor(root, { arch: 'x64', freeBytes: () => 2 * GiB })).of('disk')[0]!.status).toBe('warn');
  });

  it('fails on a clock in the past and on an empty machine-id', async () => {
    const root = rootFrom('amd64-ready');
    writeFileSync(join(root, 'etc/machine-id'), '');
    const { of } = await doctor(root, { arch: 'x64', now: new Date('2020-01-01T00:00:00Z') });
    expect(of('clock')[0]!.status).toBe('fail');
    expect(of('node-name').find((r) => r.status === 'fail')!.summary).toContain('/etc/machine-id is empty');
  });

  it('fails on an unsupported architecture', async () => {
    const { of } = await doctor(rootFrom('amd64-ready'), { arch: 'ia32' });
    expect(of('platform')[0]!.status).toBe('fail');
  });

  it('reports a broken configuration as a failing check and still checks the device', async () => {
    const { code, of, results } = await doctor(rootFrom('amd64-ready'), { arch: 'x64' }, 'broker: { url: "http://nope" }');
    expect(code).toBe(1);
    expect(of('config')[0]).toMatchObject({ status: 'fail' });
    expect(of('config')[0]!.summary).toContain('broker.url');
    expect(of('broker')[0]!.fix).toBe('fix the configuration first: fleetlet config check');
    expect(of('cgroups')[0]!.status).toBe('pass');
    expect(results.length).toBeGreaterThan(10);
  });
});

describe('fleetlet doctor on a kernel with overlay and br_netfilter built in', () => {
  /** The amd64 root with nothing loaded as a module and no /lib/modules (a board kernel, or a container). */
  function builtInKernelRoot(): string {
    const root = rootFrom('amd64-ready');
    rmSync(join(root, 'lib/modules'), { recursive: true });
    writeFileSync(join(root, 'proc/modules'), '');
    return root;
  }

  it('passes them from /proc/filesystems and /proc/sys/net/bridge, without /lib/modules', async () => {
    const root = builtInKernelRoot();
    writeFileSync(join(root, 'proc/filesystems'), 'nodev\tsysfs\nnodev\ttmpfs\nnodev\toverlay\n\text4\n');
    mkdirSync(join(root, 'proc/sys/net/bridge'), { recursive: true });
    writeFileSync(join(root, 'proc/sys/net/bridge/bridge-nf-call-iptables'), '1\n');
    const { of } = await doctor(root);
    expect(of('kernel-modules').map((r) => [r.status, r.summary])).toEqual([
      ['pass', 'overlay is built-in'],
      ['pass', 'br_netfilter is built-in'],
    ]);
  });

  it('passes them from /sys/module, and still fails a kernel that shows them nowhere', async () => {
    const root = builtInKernelRoot();
    const missing = await doctor(root);
    expect(missing.of('kernel-modules').map((r) => r.status)).toEqual(['fail', 'fail']);

    for (const name of ['overlay', 'br_netfilter']) mkdirSync(join(root, 'sys/module', name), { recursive: true });
    const { of } = await doctor(root);
    expect(of('kernel-modules').map((r) => r.status)).toEqual(['pass', 'pass']);
  });
});

describe('fleetlet doctor with k3s disabled', () => {
  it('keeps k3s prerequisites from failing the device: a warning that says k3s is disabled, and exit 0', async () => {
    const disabled = CONFIG.replace('k3s: { serverUrl: "https://k3s.example.test:6443" }', 'k3s: { enabled: false }');
    const enabled = await doctor(rootFrom('pi-bookworm-not-ready'));
    expect(enabled.of('cgroups')[0]!.status).toBe('fail');

    const { code, of, results } = await doctor(rootFrom('pi-bookworm-not-ready'), {}, disabled);
    expect(of('cgroups')[0]).toMatchObject({
      status: 'warn',
      summary: 'cgroup v2 without the memory controller: k3s will not start (k3s is disabled: needed only once k3s.enabled is true)',
    });
    expect(results.filter((r) => r.status === 'fail')).toEqual([]);
    expect(code).toBe(0);
  });
});

describe('fleetlet doctor on the k3s join token a device holds', () => {
  const CA_HASH = 'f3b4c1e2d5a6978812345678901234567890abcdefabcdefabcdefabcdef0123';
  const SERVER_PASSWORD = 'S3rverPassw0rd-cluster-admin';

  /** The amd64-ready device with its token in a 0600 file, as install.sh leaves it. */
  async function doctorWithToken(token: string) {
    const root = rootFrom('amd64-ready');
    // The config names the file as the device sees it; doctor --root reads it inside the root.
    const tokenFile = '/etc/fleetlet/k3s-token';
    mkdirSync(join(root, 'etc/fleetlet'), { recursive: true });
    writeFileSync(join(root, tokenFile), `${token}\n`, { mode: 0o600 });
    const config = CONFIG.replace('k3s: { serverUrl: "https://k3s.example.test:6443" }', `k3s: { serverUrl: "https://k3s.example.test:6443", tokenFile: "${tokenFile}" }`);
    return { tokenFile, ...(await doctor(root, { arch: 'x64' }, config)) };
  }

  it('warns when the token is a server token, naming the file but never the token, its hash or its password', async () => {
    const { tokenFile, code, results, of } = await doctorWithToken(`K10${CA_HASH}::server:${SERVER_PASSWORD}`);
    expect(of('k3s-token')).toHaveLength(1);
    expect(of('k3s-token')[0]).toMatchObject({ status: 'warn' });
    expect(of('k3s-token')[0]!.summary).toBe(
      `${tokenFile} holds the k3s SERVER token (K10<hash>::server:...): whoever reads it from this device administers the whole cluster`,
    );
    expect(of('k3s-token')[0]!.fix).toContain('agent-token-file');
    expect(of('k3s-token')[0]!.fix).toContain('k3s token create --ttl');
    const printed = JSON.stringify(results);
    for (const part of [SERVER_PASSWORD, CA_HASH, CA_HASH.slice(0, 12)]) expect(printed).not.toContain(part);
    expect(code).toBe(0); // a warning: the device can still join
  });

  it.each([
    ['an agent token', `K10${CA_HASH}::node:${SERVER_PASSWORD}`, 'is an agent token'],
    ['a bootstrap token from k3s token create', `K10${CA_HASH}::abcdef.0123456789abcdef`, 'is a bootstrap token'],
    ['a bare bootstrap token', 'abcdef.0123456789abcdef', 'is a bootstrap token'],
    ['a bare password, even one with "server:" in it', `server:${SERVER_PASSWORD}`, 'cannot tell an agent token from the server token'],
    ['a full-form token of a user that is neither server nor node', `K10${CA_HASH}::admin:${SERVER_PASSWORD}`, 'cannot tell'],
  ])('passes %s', async (_name, token, summary) => {
    const { of, results } = await doctorWithToken(token);
    expect(of('k3s-token')).toEqual([expect.objectContaining({ status: 'pass', summary: expect.stringContaining(summary) })]);
    expect(JSON.stringify(results)).not.toContain(SERVER_PASSWORD);
  });

  it('says nothing about a token when k3s is disabled', async () => {
    const root = rootFrom('amd64-ready');
    const config = CONFIG.replace('k3s: { serverUrl: "https://k3s.example.test:6443" }', `k3s: { enabled: false, token: "K10${CA_HASH}::server:${SERVER_PASSWORD}" }`);
    expect((await doctor(root, { arch: 'x64' }, config)).of('k3s-token')).toEqual([]);
  });
});

describe('fleetlet doctor from the command line', () => {
  it('prints each result with its fix and a verdict, and exits 1 when the device is not ready', async () => {
    const root = rootFrom('pi-bookworm-not-ready');
    const port = await freePort();
    const config = join(root, 'cli-config.yaml');
    writeFileSync(config, `broker: { url: "mqtt://127.0.0.1:${port}", allowPlaintext: true }\nk3s: { enabled: false }\nstateDir: /var/lib/fleetlet\n`);
    const env = { PATH: process.env.PATH! };
    const result = spawnSync(process.execPath, [FLEETLET_BUNDLE, 'doctor', '--root', root, '--config', config], { encoding: 'utf8', env, timeout: 20_000 });
    expect(result.status).toBe(1);
    // k3s is disabled in this config: its prerequisites warn, the unreachable broker fails.
    expect(result.stdout).toContain('WARN  cgroups        cgroup v2 without the memory controller: k3s will not start (k3s is disabled');
    expect(result.stdout).toContain('fix: append " cgroup_memory=1 cgroup_enable=memory" to the end of the single line in /boot/firmware/cmdline.txt, then reboot');
    expect(result.stdout).toContain(`FAIL  broker         cannot reach 127.0.0.1:${port}: ECONNREFUSED`);
    expect(result.stdout).toMatch(/\nNOT READY: \d+ failed, \d+ warnings\n$/);
  });

  it('prints the server-token warning with its fix and never the token', async () => {
    const root = rootFrom('amd64-ready');
    const tokenFile = '/etc/fleetlet/k3s-token';
    const password = 'cli-visible-server-password';
    mkdirSync(join(root, 'etc/fleetlet'), { recursive: true });
    writeFileSync(join(root, tokenFile), `K10${'ab'.repeat(32)}::server:${password}\n`, { mode: 0o600 });
    const config = join(root, 'cli-config.yaml');
    writeFileSync(config, `broker: { url: "mqtts://127.0.0.1:${await freePort()}" }\nk3s: { serverUrl: "https://127.0.0.1:${await freePort()}", tokenFile: "${tokenFile}" }\n`);
    const result = spawnSync(process.execPath, [FLEETLET_BUNDLE, 'doctor', '--root', root, '--config', config], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH! },
      timeout: 20_000,
    });
    expect(result.stdout).toContain(`WARN  k3s-token      ${tokenFile} holds the k3s SERVER token`);
    expect(result.stdout).toContain('fix: give devices the agent token instead: set agent-token-file on the server');
    expect(result.stdout + result.stderr).not.toContain(password);
    expect(result.stdout + result.stderr).not.toContain('abab');
  });
});
