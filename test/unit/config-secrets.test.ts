import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { envName } from '../../src/config/env-layer.js';
import { loadConfig } from '../../src/config/load.js';
import { SECRET_PATHS } from '../../src/config/schema.js';
import { ConfigError, type ConfigProblem } from '../../src/lib/errors.js';
import { tempDir } from '../helpers/paths.js';

const { dir, cleanup } = tempDir('fleetlet-config-secrets-');
afterAll(cleanup);

function configFile(name: string, yaml: string): string {
  const folder = join(dir, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, 'config.yaml'), yaml);
  return join(folder, 'config.yaml');
}

/** The problems loadConfig reports, or a failure when it accepts the config. */
function problemsOf(options: Parameters<typeof loadConfig>[0]): ConfigProblem[] {
  try {
    loadConfig(options);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  return expect.unreachable('the config was accepted');
}

describe('secrets in the configuration', () => {
  it.each(SECRET_PATHS)('--set refuses the secret %s, naming the key, its *File key and its environment variable', (key) => {
    const path = configFile(`set-${key}`, 'broker: {url: "mqtts://b.example"}\n');
    const problems = problemsOf({ path, explicit: true, env: {}, sets: [`${key}=very-secret-value`] });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ path: key, source: `flag --set ${key}` });
    expect(problems[0]!.message).toContain(`${key}File`);
    expect(problems[0]!.message).toContain(envName(key.split('.')));
    expect(JSON.stringify(problems)).not.toContain('very-secret');
  });

  it('still takes the secrets from the environment and from files', () => {
    const passwordFile = join(dir, 'mqtt-password');
    writeFileSync(passwordFile, 'mqtt-pass\n', { mode: 0o600 });
    const path = configFile('env-and-file', `broker: {url: "mqtts://b.example", auth: {passwordFile: ${passwordFile}}}\n`);
    const { config } = loadConfig({ path, explicit: true, env: { FLEETLET_K3S_TOKEN: 'K10abc::node:join' } });
    expect(config.k3s.token?.reveal()).toBe('K10abc::node:join');
    expect(config.broker.auth.password?.reveal()).toBe('mqtt-pass');
  });

  it('refuses secrets with control characters (NUL, ESC, C1) from a file, the environment and YAML, without echoing them', () => {
    const tokenFile = join(dir, 'nul-token');
    writeFileSync(tokenFile, 'K10abc::node:very-secret\0tail\n', { mode: 0o600 });
    const path = configFile('control-secrets', `broker: {url: "mqtts://b.example", auth: {password: "very-secret\\u0085"}}\nk3s: {tokenFile: ${tokenFile}}\n`);
    const fromFile = problemsOf({ path, explicit: true, env: {} });
    expect(fromFile.map((problem) => problem.path).sort()).toEqual(['broker.auth.password', 'k3s.token']);
    for (const problem of fromFile) expect(problem.message).toContain('control characters');
    expect(JSON.stringify(fromFile)).not.toContain('very-secret');

    const plain = configFile('control-env', 'broker: {url: "mqtts://b.example"}\n');
    const fromEnv = problemsOf({ path: plain, explicit: true, env: { FLEETLET_K3S_TOKEN: 'K10abc::node:very-secret\u001b[2J' } });
    expect(fromEnv).toEqual([expect.objectContaining({ path: 'k3s.token', source: 'env FLEETLET_K3S_TOKEN', message: expect.stringContaining('control characters') })]);
    expect(JSON.stringify(fromEnv)).not.toContain('very-secret');
  });

  it.each([
    ['broker.url', 'mqtts://broker\n.example:8883'],
    ['k3s.serverUrl', 'https://10.0.0.1:6443/\t'],
    ['k3s.channelUrl', 'https://update.example/\u007fchannels'],
    ['k3s.artifactUrl', 'https://mirror.example/\u009breleases'],
  ])('refuses %s with a control character, which a URL parser would drop or encode silently', (key, url) => {
    const path = configFile(`control-${key}`, 'broker: {url: "mqtts://b.example"}\n');
    const problems = problemsOf({ path, explicit: true, env: { [envName(key.split('.'))]: url } });
    expect(problems).toEqual([expect.objectContaining({ path: key, message: expect.stringContaining('control characters') })]);
  });
});
