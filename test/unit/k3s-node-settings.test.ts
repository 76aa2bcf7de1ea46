import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { buildAgentInvocation } from '../../src/k3s/args.js';
import { NodeSettingsFile, withNodeSettings } from '../../src/k3s/node-settings.js';
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

  it('are kept in a 0600 file, merged change by change, and reverted one step', () => {
    const file = new NodeSettingsFile(join(dir, 'node-settings.json'));
    expect(file.load()).toEqual({});
    file.apply({ labels: { role: 'gw' } });
    file.apply({ taints: ['edge=true:NoSchedule'] });
    expect(file.load()).toEqual({ labels: { role: 'gw' }, taints: ['edge=true:NoSchedule'] });
    expect(statSync(join(dir, 'node-settings.json')).mode & 0o777).toBe(0o600);
    file.revert();
    expect(file.load()).toEqual({ labels: { role: 'gw' } });
  });

  it('ignore a file that is not valid settings instead of starting k3s with garbage', () => {
    writeFileSync(join(dir, 'node-settings.json'), JSON.stringify({ serverUrl: 'http://plain:6443' }));
    expect(new NodeSettingsFile(join(dir, 'node-settings.json')).load()).toEqual({});
    writeFileSync(join(dir, 'node-settings.json'), '{ not json');
    expect(new NodeSettingsFile(join(dir, 'node-settings.json')).load()).toEqual({});
    const other = new NodeSettingsFile(join(dir, 'other.json'));
    other.apply({ labels: { a: 'b' } });
    expect(() => other.apply({ serverUrl: 'http://plain:6443' })).toThrow();
    expect(JSON.parse(readFileSync(join(dir, 'other.json'), 'utf8'))).toEqual({ labels: { a: 'b' } });
    expect(JSON.parse(readFileSync(join(dir, 'other.json.previous'), 'utf8'))).toEqual({});
  });
});
