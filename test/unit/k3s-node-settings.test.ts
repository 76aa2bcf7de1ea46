import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildAgentInvocation } from '../../src/k3s/args.js';
import { K3sConfigureArgsSchema } from '../../src/protocol/command.js';
import { NodeSettingsFile, NodeSettingsRevertError, withNodeSettings } from '../../src/k3s/node-settings.js';
import { tempDir } from '../helpers/paths.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir('fleetlet-node-settings-')));
afterEach(() => cleanup());

const k3s = ConfigSchema.parse({
  broker: { url: 'mqtts://broker.example:8883' },
  k3s: { serverUrl: 'https://10.0.0.1:6443', tokenFile: '/etc/fleetlet/k3s-token', nodeLabels: { role: 'edge' } },
}).k3s;

describe('node settings from commands', () => {
  it('override the config on the next start; a join token replaces the token file and stays off the command line', () => {
    const invocation = buildAgentInvocation(withNodeSettings(k3s, { labels: { role: 'gw' }, serverUrl: 'https://10.0.0.2:6443', joinToken: 'K10x::node:new' }));
    expect(invocation.args).toEqual(['agent', '--server', 'https://10.0.0.2:6443', '--data-dir', '/var/lib/rancher/k3s', '--node-label', 'role=gw']);
    expect(invocation.token?.reveal()).toBe('K10x::node:new');
    expect(invocation.env).toEqual({});
  });

  it('are kept in a 0600 file, merged change by change, and reverted one step', async () => {
    const file = new NodeSettingsFile(join(dir, 'node-settings.json'));
    expect(file.load()).toEqual({});
    await file.apply('cmd-1', { labels: { role: 'gw' } });
    await file.apply('cmd-2', { taints: ['edge=true:NoSchedule'] });
    expect(file.load()).toEqual({ labels: { role: 'gw' }, taints: ['edge=true:NoSchedule'] });
    expect(statSync(join(dir, 'node-settings.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'node-settings.json.previous')).mode & 0o777).toBe(0o600);
    await file.revert('cmd-2');
    expect(file.load()).toEqual({ labels: { role: 'gw' } });
  });

  it('keep every server URL k3s.configure accepts, also one whose scheme is in capitals', async () => {
    const serverUrl = 'HTTPS://k3s.example:6443';
    expect(K3sConfigureArgsSchema.safeParse({ serverUrl }).success).toBe(true);
    const file = new NodeSettingsFile(join(dir, 'node-settings.json'));
    await file.apply('cmd-1', { serverUrl });
    expect(file.load()).toEqual({ serverUrl });
  });

  it('apply repeated for the same command (a run resumed after a crash) keeps the settings from before it', async () => {
    const file = new NodeSettingsFile(join(dir, 'node-settings.json'));
    await file.apply('cmd-1', { labels: { role: 'gw' } });
    await file.apply('cmd-2', { labels: { role: 'new' }, joinToken: 'K10x::node:new' });
    await file.apply('cmd-2', { labels: { role: 'new' }, joinToken: 'K10x::node:new' });
    expect(file.load()).toEqual({ labels: { role: 'new' }, joinToken: 'K10x::node:new' });
    await file.revert('cmd-2');
    expect(file.load()).toEqual({ labels: { role: 'gw' } });
    // A revert repeated after a crash writes the same settings again.
    await file.revert('cmd-2');
    expect(file.load()).toEqual({ labels: { role: 'gw' } });
  });

  it('refuse to revert a command whose previous settings they do not hold, and leave the settings alone', async () => {
    const file = new NodeSettingsFile(join(dir, 'node-settings.json'));
    await file.apply('cmd-1', { labels: { role: 'gw' } });
    await expect(file.revert('cmd-other')).rejects.toThrow(NodeSettingsRevertError);
    expect(file.load()).toEqual({ labels: { role: 'gw' } });
  });

  it('remove temp files a crash left mid-write (they hold the join token)', async () => {
    const file = new NodeSettingsFile(join(dir, 'node-settings.json'));
    writeFileSync(join(dir, '.node-settings.json.tmp-0badc0de'), '{"joinToken":"K10x::node:half"}');
    writeFileSync(join(dir, '.node-settings.json.previous.tmp-0badc0de'), '{');
    await file.apply('cmd-1', { labels: { role: 'gw' } });
    expect(readdirSync(dir).sort()).toEqual(['node-settings.json', 'node-settings.json.previous']);
  });

  it('ignore a file that is not valid settings instead of starting k3s with garbage', async () => {
    writeFileSync(join(dir, 'node-settings.json'), JSON.stringify({ serverUrl: 'http://plain:6443' }));
    expect(new NodeSettingsFile(join(dir, 'node-settings.json')).load()).toEqual({});
    writeFileSync(join(dir, 'node-settings.json'), '{ not json');
    expect(new NodeSettingsFile(join(dir, 'node-settings.json')).load()).toEqual({});
    const other = new NodeSettingsFile(join(dir, 'other.json'));
    await other.apply('cmd-1', { labels: { a: 'b' } });
    await expect(other.apply('cmd-2', { serverUrl: 'http://plain:6443' })).rejects.toThrow();
    expect(JSON.parse(readFileSync(join(dir, 'other.json'), 'utf8'))).toEqual({ labels: { a: 'b' } });
    expect(JSON.parse(readFileSync(join(dir, 'other.json.previous'), 'utf8'))).toEqual({ commandId: 'cmd-1', settings: {} });
  });
});
