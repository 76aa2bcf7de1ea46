import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildAgentInvocation, checkExtraArg, commandLineLooksLikeK3s } from '../../src/k3s/args.js';
import { k3sChildEnvironment } from '../../src/k3s/child-env.js';
import { AgentArgsError } from '../../src/k3s/errors.js';
import { K3S_AGENT_FLAGS } from '../../src/k3s/flags.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { REPO_ROOT } from '../helpers/paths.js';

const TOKEN = 'K10deadbeef::node:s3cr3t-join-token';

function k3sConfig(k3s: Record<string, unknown>) {
  return ConfigSchema.parse({ broker: { url: 'mqtts://broker.example:8883' }, k3s }).k3s;
}

/** Runs the fake k3s with the arguments and --help: exit 0 means its urfave-style parser accepted every flag. */
function fakeAccepts(args: string[]): { ok: boolean; stderr: string } {
  const result = spawnSync(FAKE_K3S, [...args, '--help'], { encoding: 'utf8', env: { ...process.env, FAKE_K3S_AS_ROOT: '1' } });
  return { ok: result.status === 0, stderr: result.stderr };
}

describe('k3s agent arguments', () => {
  it('orders node labels by code unit, so that the command line is the same under every locale', () => {
    const invocation = buildAgentInvocation(
      k3sConfig({ serverUrl: 'https://10.0.0.1:6443', token: TOKEN, nodeLabels: { b: '1', 'a.b': '2', B: '3', 'a-b': '4' } }),
    );
    const labels = invocation.args.filter((_, i) => invocation.args[i - 1] === '--node-label');
    // A collator would give a-b, a.b, b, B.
    expect(labels).toEqual(['B=3', 'a-b=4', 'a.b=2', 'b=1']);
  });

  it('maps every config key to its flag, with the token neither on the command line nor in the environment', () => {
    const invocation = buildAgentInvocation(
      k3sConfig({
        serverUrl: 'https://10.0.0.1:6443',
        token: TOKEN,
        dataDir: '/srv/k3s',
        nodeName: 'pi-01',
        withNodeId: true,
        nodeLabels: { 'site.example/zone': 'b', role: 'edge' },
        nodeTaints: ['dedicated=edge:NoSchedule'],
        nodeIp: ['192.168.1.20'],
        nodeExternalIp: ['203.0.113.7'],
        disableApiserverLb: true,
        lbServerPort: 16444,
        kubeletArgs: ['max-pods=50'],
        extraArgs: ['--snapshotter=native', '--debug'],
      }),
    );
    expect(invocation.args).toEqual([
      'agent',
      '--server', 'https://10.0.0.1:6443',
      '--data-dir', '/srv/k3s',
      '--node-name', 'pi-01',
      '--with-node-id',
      '--node-label', 'role=edge',
      '--node-label', 'site.example/zone=b',
      '--node-taint', 'dedicated=edge:NoSchedule',
      '--node-ip', '192.168.1.20',
      '--node-external-ip', '203.0.113.7',
      '--disable-apiserver-lb',
      '--lb-server-port', '16444',
      '--kubelet-arg', 'max-pods=50',
      '--snapshotter=native',
      '--debug',
    ]);
    expect(invocation.env).toEqual({});
    expect(invocation.token?.reveal()).toBe(TOKEN);
    expect(invocation.args.join(' ')).not.toContain('s3cr3t');
    expect(fakeAccepts(invocation.args)).toMatchObject({ ok: true });
  });

  it('passes a token file by path and leaves defaults implicit', () => {
    const invocation = buildAgentInvocation(k3sConfig({ serverUrl: 'https://k3s.example:6443', tokenFile: '/etc/fleetlet/k3s-token' }));
    expect(invocation.args).toEqual(['agent', '--server', 'https://k3s.example:6443', '--data-dir', '/var/lib/rancher/k3s', '--token-file', '/etc/fleetlet/k3s-token']);
    expect(invocation.env).toEqual({});
    expect(invocation.token).toBeUndefined();
  });

  it('needs a server and a token', () => {
    expect(() => buildAgentInvocation(k3sConfig({ token: TOKEN }))).toThrow(/serverUrl/);
    expect(() => buildAgentInvocation(k3sConfig({ serverUrl: 'https://k3s.example:6443' }))).toThrow(/token/);
  });

  it('accepts extra args that k3s agent knows, in --name=value or --name form', () => {
    expect(checkExtraArg('--kube-proxy-arg=metrics-bind-address=0.0.0.0')).toEqual(['--kube-proxy-arg=metrics-bind-address=0.0.0.0']);
    expect(checkExtraArg('--selinux=false')).toEqual(['--selinux=false']);
    expect(checkExtraArg('--prefer-bundled-bin')).toEqual(['--prefer-bundled-bin']);
  });

  it.each([
    ['--cluster-init', /not a flag of k3s agent/], // a server flag
    ['--no-flannel', /not a flag of k3s agent/], // removed in v1.26
    ['--token=abc', /set by fleetlet/],
    ['-t=abc', /set by fleetlet/],
    ['--server=https://other:6443', /set by fleetlet/],
    ['--log=/var/log/k3s.log', /set by fleetlet/],
    ['--snapshotter', /needs a value/],
    ['--debug=maybe', /true or false/],
    ['max-pods=5', /not a flag/],
  ])('refuses extra arg %s', (arg, message) => {
    expect(() => checkExtraArg(arg)).toThrow(AgentArgsError);
    expect(() => checkExtraArg(arg)).toThrow(message);
  });

  it('refuses kubelet args written as flags', () => {
    expect(() => buildAgentInvocation(k3sConfig({ serverUrl: 'https://a:6443', token: TOKEN, kubeletArgs: ['--max-pods=5'] }))).toThrow(
      /name=value/,
    );
  });

  it('keeps its flag list identical to the one the fake agent enforces', async () => {
    const fake = (await import(join(REPO_ROOT, 'test/fixtures/fake-k3s/flags.js'))) as { AGENT_FLAGS: Record<string, { aliases?: string[]; bool?: boolean }> };
    const describeList = (flags: Record<string, { aliases?: readonly string[]; bool?: boolean }>) =>
      Object.entries(flags)
        .map(([name, flag]) => `${name}|${(flag.aliases ?? []).join(',')}|${flag.bool === true}`)
        .sort();
    expect(describeList(K3S_AGENT_FLAGS)).toEqual(describeList(fake.AGENT_FLAGS));
    expect(fakeAccepts(['agent', '--cluster-init'])).toMatchObject({ ok: false, stderr: expect.stringContaining('flag provided but not defined: -cluster-init') });
  });

  it('gives the child only allow-listed variables: no secret of fleetlet, no inherited K3S_*, no NOTIFY_SOCKET', () => {
    const env = k3sChildEnvironment(
      {
        PATH: '/usr/bin',
        HOME: '/root',
        LANG: 'C.UTF-8',
        LC_TIME: 'de_DE.UTF-8',
        TZ: 'UTC',
        HTTPS_PROXY: 'http://proxy:3128',
        no_proxy: '10.0.0.0/8',
        CONTAINERD_HTTP_PROXY: 'http://proxy:3128',
        FLEETLET_BROKER_AUTH_PASSWORD: 'mqtt-secret',
        FLEETLET_K3S_TOKEN: TOKEN,
        AWS_SECRET_ACCESS_KEY: 'cloud-secret',
        K3S_URL: 'https://stale:6443',
        K3S_TOKEN: 'stale',
        NOTIFY_SOCKET: '/run/systemd/notify',
        WATCHDOG_USEC: '30000000',
      },
      { K3S_SELINUX: 'true' },
    );
    expect(env).toEqual({
      PATH: '/usr/bin',
      HOME: '/root',
      LANG: 'C.UTF-8',
      LC_TIME: 'de_DE.UTF-8',
      TZ: 'UTC',
      HTTPS_PROXY: 'http://proxy:3128',
      no_proxy: '10.0.0.0/8',
      CONTAINERD_HTTP_PROXY: 'http://proxy:3128',
      K3S_SELINUX: 'true',
    });
  });

  it('passes the variables k3s.passEnv names, by name or prefix, but never FLEETLET_*, K3S_* or NOTIFY_SOCKET', () => {
    const base = { SSL_CERT_FILE: '/etc/ssl/site.pem', SITE_A: 'a', SITE_B: 'b', OTHER: 'x', FLEETLET_K3S_TOKEN: TOKEN, K3S_TOKEN: 'stale', NOTIFY_SOCKET: '/run/n' };
    expect(k3sChildEnvironment(base, {}, ['SSL_CERT_FILE', 'SITE_*', 'FLEETLET_*', 'K3S_TOKEN', 'NOTIFY_SOCKET', '*'])).toEqual({
      SSL_CERT_FILE: '/etc/ssl/site.pem',
      SITE_A: 'a',
      SITE_B: 'b',
      OTHER: 'x',
    });
  });

  it('notices a command line that the upgrade controller would take for k3s', () => {
    expect(commandLineLooksLikeK3s(['/usr/local/bin/fleetlet', 'agent'])).toBe(false);
    expect(commandLineLooksLikeK3s(['/opt/k3s-tools/fleetlet', 'agent'])).toBe(true);
  });
});
