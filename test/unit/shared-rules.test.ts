import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { encryptedConnectionOf, withPlaintextOptIn } from '../../src/cli/fleet-connection-flags.js';
import { loadConfig } from '../../src/config/load.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { ConfigError, UsageError } from '../../src/lib/errors.js';
import { clientOptions } from '../../src/link/client-options.js';
import { AgentUpgradeArgsSchema, K3sConfigureArgsSchema, K3sUpgradeArgsSchema } from '../../src/protocol/command.js';
import { OUTBOX_CLASSES } from '../../src/protocol/outbox-classes.js';
import { StatusSchema, STATUS_EXAMPLE } from '../../src/protocol/status.js';
import { tempDir } from '../helpers/paths.js';

/**
 * A rule that the config and the wire both apply is defined once (src/protocol/), so the two cannot disagree. Each
 * test puts the config and a command side by side on the inputs where the old copies differed.
 */
const { dir, cleanup } = tempDir();
afterAll(cleanup);

const configAccepts = (k3s: Record<string, unknown>): boolean =>
  ConfigSchema.safeParse({ broker: { url: 'mqtts://broker.example' }, k3s }).success;

describe('node labels and taints: one Kubernetes rule for k3s.nodeTaints and k3s.configure', () => {
  const taints: [taint: string, kubeletTakesIt: boolean][] = [
    ['dedicated=edge:NoSchedule', true],
    ['node-role.kubernetes.io/edge:NoExecute', true],
    ['example.com/gpu=:PreferNoSchedule', true],
    // The config's copy took any length, the command's capped the value at 63: the kubelet refuses a longer value.
    [`dedicated=${'v'.repeat(64)}:NoSchedule`, false],
    // The command's copy took a 253-character key without a prefix: a label name has at most 63.
    [`${'k'.repeat(64)}=v:NoSchedule`, false],
    // Both copies took any character but = : and space: the kubelet parses key and value as label key and value.
    ['dedic@ted=edge:NoSchedule', false],
    ['dedicated=ed/ge:NoSchedule', false],
    ['dedicated=edge', false],
  ];

  it.each(taints)('%s: accepted by both only when the kubelet takes it (%s)', (taint, kubeletTakesIt) => {
    expect({ config: configAccepts({ nodeTaints: [taint] }), command: K3sConfigureArgsSchema.safeParse({ taints: [taint] }).success }).toEqual({
      config: kubeletTakesIt,
      command: kubeletTakesIt,
    });
  });

  it('takes the same labels in device.labels, k3s.nodeLabels and k3s.configure', () => {
    const labels: [Record<string, string>, boolean][] = [
      [{ 'example.com/site': 'home', zone: '' }, true],
      [{ site: 'v'.repeat(64) }, false],
      [{ '-site': 'home' }, false],
    ];
    for (const [value, ok] of labels) {
      const device = ConfigSchema.safeParse({ broker: { url: 'mqtts://broker.example' }, device: { labels: value } }).success;
      expect({ device, node: configAccepts({ nodeLabels: value }), command: K3sConfigureArgsSchema.safeParse({ labels: value }).success }).toEqual({
        device: ok,
        node: ok,
        command: ok,
      });
    }
  });
});

describe('versions: one rule for k3s.version and k3s.upgrade, one for agent.upgrade', () => {
  it.each([
    ['v1.36.3+k3s1', true],
    ['1.36.3+k3s1', false],
    ['v1.36.3', false],
  ])('k3s version %s: %s in both', (version, ok) => {
    const command = K3sUpgradeArgsSchema.safeParse({ version }).success;
    expect({ config: configAccepts({ version }), command }).toEqual({ config: ok, command: ok });
  });

  it('takes SemVer fleetlet versions with a bounded prerelease', () => {
    const accepts = (version: string) =>
      AgentUpgradeArgsSchema.safeParse({ version, artifactUrl: 'https://r.example/fleetlet', sha256: 'a'.repeat(64) }).success;
    expect([accepts('1.2.3'), accepts('1.2.3-rc.1'), accepts('v1.2.3'), accepts(`1.2.3-${'a'.repeat(33)}`)]).toEqual([true, true, false, false]);
  });
});

describe('a plaintext broker: one rule inside the broker schema', () => {
  function load(name: string, yaml: string) {
    const folder = join(dir, name);
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'config.yaml'), yaml);
    return () => loadConfig({ path: join(folder, 'config.yaml'), explicit: true, env: {} });
  }

  function problemsOf(run: () => unknown): string[] {
    try {
      run();
    } catch (err) {
      if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
      throw err;
    }
    return [];
  }

  it('refuses mqtt:// spelt in capitals, which the text check after parsing let through unwarned', () => {
    expect(problemsOf(load('capitals', 'broker: {url: "MQTT://broker.example:1883"}\n'))).toEqual([
      'broker.url: plain mqtt:// sends everything unencrypted; use mqtts://, or set broker.allowPlaintext: true, got "MQTT://broker.example:1883"',
    ]);
    const allowed = load('capitals-allowed', 'broker: {url: "MQTT://broker.example:1883", allowPlaintext: true}\n')();
    expect(allowed.warnings).toContain('broker.url uses plain mqtt://: reports and commands cross the network unencrypted');
  });

  it('reports a plaintext broker together with the other problems of the config, in one pass', () => {
    expect(problemsOf(load('with-others', 'broker: {url: "mqtt://broker.example:1883"}\ndevice: {id: BAD}\n'))).toEqual(
      expect.arrayContaining([expect.stringMatching(/^broker\.url: plain mqtt/), expect.stringMatching(/^device\.id: /)]),
    );
  });

  it('gives the agent TLS options for an mqtts:// URL in any case of letters', () => {
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n');
    const broker = ConfigSchema.parse({ broker: { url: 'MQTTS://broker.example:8883', tls: { caFile } } }).broker;
    const options = clientOptions(broker, 'pi-1', { topic: 't', payload: 'offline' });
    expect({ rejectUnauthorized: options.rejectUnauthorized, ca: String(options.ca) }).toEqual({
      rejectUnauthorized: true,
      ca: expect.stringContaining('BEGIN CERTIFICATE'),
    });
  });
});

describe('a plaintext broker for the operator tools: the same scheme rule', () => {
  const connect = (...args: string[]) => {
    const command = withPlaintextOptIn(new Command().option('--broker <url>').option('--topic-root <root>', 'topic root', 'fleetlet/v1'));
    command.parse(args, { from: 'user' });
    return () => encryptedConnectionOf(command, { path: undefined, profile: {} }).broker;
  };

  it('takes mqtts:// in any case of letters, and refuses mqtt:// unless --allow-plaintext', () => {
    expect(connect('--broker', 'MQTTS://broker.example:8883')()).toBe('MQTTS://broker.example:8883');
    expect(connect('--broker', 'MQTT://broker.example:1883')).toThrow(UsageError);
    expect(connect('--broker', 'mqtt://broker.example:1883', '--allow-plaintext')()).toBe('mqtt://broker.example:1883');
  });
});

describe('outbox classes: one list for the store, the status message and the limits', () => {
  it('gives every class a budget in the config and a count in the status', () => {
    const limits = ConfigSchema.parse({ broker: { url: 'mqtts://broker.example' } }).limits.outbox;
    const counts = StatusSchema.shape.outbox.shape.depth.shape;
    expect({ budgets: Object.keys(limits).filter((key) => key !== 'maxTotalBytes'), counts: Object.keys(counts) }).toEqual({
      budgets: [...OUTBOX_CLASSES],
      counts: [...OUTBOX_CLASSES],
    });
    expect(StatusSchema.safeParse({ ...STATUS_EXAMPLE, outboxDrops: { status: 1, event: 0, result: 0, diskFull: 2 } }).success).toBe(true);
    expect(StatusSchema.safeParse({ ...STATUS_EXAMPLE, outboxDrops: { status: 1, event: 0, diskFull: 2 } }).success).toBe(false);
  });
});
