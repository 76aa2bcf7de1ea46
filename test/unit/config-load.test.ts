import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { envName } from '../../src/config/env-layer.js';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { leaves } from '../../src/config/schema-walk.js';
import { ConfigError } from '../../src/lib/errors.js';
import { Secret } from '../../src/lib/secret.js';
import { tempDir } from '../helpers/paths.js';

const { dir, cleanup } = tempDir();
afterAll(cleanup);

function configDir(name: string, main: string | undefined, dropIns: Record<string, string> = {}): string {
  const folder = join(dir, name);
  mkdirSync(join(folder, 'config.d'), { recursive: true });
  if (main !== undefined) writeFileSync(join(folder, 'config.yaml'), main);
  for (const [file, text] of Object.entries(dropIns)) writeFileSync(join(folder, 'config.d', file), text);
  return join(folder, 'config.yaml');
}

describe('configuration sources and their precedence', () => {
  it('applies defaults < file < drop-ins (alphabetical) < env < --set, key by key', () => {
    const path = configDir(
      'precedence',
      [
        'broker:',
        '  url: mqtts://from-file:8883',
        '  keepaliveSeconds: 40',
        'telemetry:',
        '  intervalSeconds: 60',
        'device:',
        '  id: from-file',
        '  labels: {site: file, rack: r1}',
        'log: {level: warn}',
        '',
      ].join('\n'),
      {
        '20-later.yaml': 'telemetry:\n  intervalSeconds: 20\ndevice:\n  labels: {site: dropin-20}\n',
        '10-earlier.yaml': 'telemetry:\n  intervalSeconds: 10\n  http: {port: 9200}\n',
        'ignored.txt': 'this: [is not yaml',
      },
    );
    const { config, files } = loadConfig({
      path,
      explicit: true,
      env: { FLEETLET_TELEMETRY_INTERVAL_SECONDS: '45', FLEETLET_DEVICE_ID: 'from-env', HOME: '/root' },
      sets: ['device.id=from-flag', 'device.labels.extra=flag'],
    });
    expect(files.map((f) => f.slice(dir.length))).toEqual([
      '/precedence/config.yaml',
      '/precedence/config.d/10-earlier.yaml',
      '/precedence/config.d/20-later.yaml',
    ]);
    expect(config.broker.url).toBe('mqtts://from-file:8883'); // file only
    expect(config.broker.keepaliveSeconds).toBe(40); // file over default 30
    expect(config.broker.topicRoot).toBe('fleetlet/v1'); // default
    expect(config.telemetry.http.port).toBe(9200); // drop-in over default
    expect(config.telemetry.intervalSeconds).toBe(45); // env over both drop-ins and the file
    expect(config.device.id).toBe('from-flag'); // --set over env over file
    expect(config.device.labels).toEqual({ site: 'dropin-20', rack: 'r1', extra: 'flag' }); // maps merge key by key
    expect(config.log.level).toBe('warn');
  });

  it('runs from drop-ins alone, and from defaults plus env with no file at all', () => {
    const onlyDropIns = configDir('dropins-only', undefined, { '00-broker.yaml': 'broker: {url: "mqtts://d:8883"}\n' });
    expect(loadConfig({ path: onlyDropIns, explicit: true, env: {} }).config.broker.url).toBe('mqtts://d:8883');
    const nothing = join(dir, 'nowhere', 'config.yaml');
    const loaded = loadConfig({ path: nothing, explicit: false, env: { FLEETLET_BROKER_URL: 'mqtts://e:8883' } });
    expect(loaded.files).toEqual([]);
    expect(loaded.config.stateDir).toBe('/var/lib/fleetlet');
  });

  it('replaces lists whole rather than merging them', () => {
    const path = configDir('lists', 'broker: {url: "mqtts://b"}\ndevice:\n  groups: [a, b, c]\n');
    const { config } = loadConfig({ path, explicit: true, env: { FLEETLET_DEVICE_GROUPS: 'x,y' } });
    expect(config.device.groups).toEqual(['x', 'y']);
  });

  it('reads secrets from files into redacting Secret values', () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'K10abcdef::server:topsecret\n', { mode: 0o600 });
    const path = configDir('secret', `broker: {url: "mqtts://b"}\nk3s:\n  tokenFile: ${tokenFile}\n`);
    const { config, warnings } = loadConfig({ path, explicit: true, env: {} });
    expect(warnings).toEqual([]);
    expect(config.k3s.token).toBeInstanceOf(Secret);
    expect(config.k3s.token?.reveal()).toBe('K10abcdef::server:topsecret');
    expect(JSON.stringify(config)).not.toContain('topsecret');
    expect(`${config.k3s.token}`).toBe('[redacted]');
  });

  it('accepts a bootstrap token file that is gone (spent after enrolment), but not a missing CA or key file', () => {
    const ca = join(dir, 'fleet-ca.crt');
    writeFileSync(ca, 'not read here\n');
    const enrolment = `enrolment:\n  hubUrl: https://hub.example.net\n  caFile: ${ca}\n  bootstrapTokenFile: ${join(dir, 'spent.token')}\n`;
    const path = configDir('spent-token', `broker: {url: "mqtts://b"}\n${enrolment}`);
    expect(loadConfig({ path, explicit: true, env: {} }).config.enrolment?.bootstrapTokenFile).toBe(join(dir, 'spent.token'));
    const noCa = configDir('no-ca', `broker: {url: "mqtts://b"}\n${enrolment.replace(ca, join(dir, 'missing-ca.crt'))}`);
    expect(() => loadConfig({ path: noCa, explicit: true, env: {} })).toThrow(/caFile.*no such file/s);
  });

  it('throws a ConfigError listing problems from every source together', () => {
    const path = configDir('mixed', 'broker: {url: "mqtts://b"}\ndevice: {id: BAD}\n', { '50.yaml': 'log: {level: nope}\n' });
    try {
      loadConfig({ path, explicit: true, env: { FLEETLET_TELEMETRY_INTERVAL_SECONDS: '1' }, sets: ['k3s.withNodeId=perhaps'] });
      expect.unreachable('loadConfig accepted a bad config');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems.map((p) => `${p.path}@${p.source.replace(dir, '')}`);
      expect(problems).toEqual(
        expect.arrayContaining([
          'device.id@/mixed/config.yaml:2',
          'log.level@/mixed/config.d/50.yaml:1',
          'telemetry.intervalSeconds@env FLEETLET_TELEMETRY_INTERVAL_SECONDS',
          'k3s.withNodeId@flag --set k3s.withNodeId',
        ]),
      );
    }
  });
});

describe('names and schemas derived from the zod schema', () => {
  it('gives every key a distinct FLEETLET_ env var name', () => {
    const names = leaves(ConfigSchema).map((leaf) => envName(leaf.path));
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain('FLEETLET_BROKER_TLS_CA_FILE');
    expect(names).toContain('FLEETLET_TELEMETRY_HTTP_PORT');
    expect(names).toContain('FLEETLET_K3S_DISABLE_APISERVER_LB');
  });

  it('generates a JSON Schema with every key, closed objects and the defaults', () => {
    const schema = configJsonSchema() as Record<string, unknown>;
    expect(schema.title).toBe('fleetlet configuration');
    expect(schema.required).toEqual(['broker']);
    const propertyAt = (path: string[]) =>
      path.reduce<Record<string, unknown> | undefined>(
        (node, key) => (node?.properties as Record<string, Record<string, unknown>> | undefined)?.[key],
        schema,
      );
    for (const leaf of leaves(ConfigSchema)) {
      expect(propertyAt(leaf.path), leaf.path.join('.')).toBeDefined();
      const parent = leaf.path.length > 1 ? propertyAt(leaf.path.slice(0, -1)) : schema;
      expect(parent?.additionalProperties, leaf.path.join('.')).toBe(false);
    }
    expect(propertyAt(['telemetry', 'intervalSeconds'])).toMatchObject({ type: 'integer', default: 30, minimum: 5 });
    expect(propertyAt(['log', 'level'])).toMatchObject({ enum: expect.arrayContaining(['info', 'debug']) });
    // A secret is written as a string in the file, whatever it becomes in memory.
    expect(propertyAt(['k3s', 'token'])).toMatchObject({ type: 'string' });
  });
});
