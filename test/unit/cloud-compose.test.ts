import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { REPO_ROOT } from '../helpers/paths.js';

/** packaging/cloud/compose.yaml against the shipped configs it runs: a path or port changed on one side only fails here. */
const CLOUD = join(REPO_ROOT, 'packaging/cloud');

interface Service {
  image: string;
  command: string[];
  user?: string;
  ports?: string[];
  volumes: string[];
  networks?: { default?: { aliases?: string[] } };
}
const compose = parse(readFileSync(join(CLOUD, 'compose.yaml'), 'utf8')) as { services: Record<string, Service> };
const mosquittoConf = readFileSync(join(CLOUD, 'mosquitto/mosquitto.conf'), 'utf8');
const k3sConfig = parse(readFileSync(join(CLOUD, 'k3s-server/config.yaml'), 'utf8')) as Record<string, unknown>;
const hubUnit = readFileSync(join(CLOUD, 'fleetlet-hub.service'), 'utf8');

function service(name: string): Service {
  const found = compose.services[name];
  if (!found) throw new Error(`compose.yaml has no service ${name}`);
  return found;
}

/** Bind mounts as container path -> host source (relative sources are resolved against packaging/cloud). */
function mounts(s: Service): Map<string, string> {
  return new Map(
    s.volumes.map((volume) => {
      const [source, target] = volume.split(':') as [string, string];
      return [target, source.startsWith('./') ? join(CLOUD, source) : source];
    }),
  );
}

/** Whether a container path lies in one of the service's mounts (the file itself or a directory holding it). */
function mounted(s: Service, path: string): boolean {
  return [...mounts(s).keys()].some((target) => path === target || path.startsWith(`${target}/`));
}

function directives(conf: string, name: string): string[] {
  return conf
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((words) => words[0] === name)
    .map((words) => words[1]!);
}

/** The mosquitto listener whose clients show certificates of the operator CA (the hub's and the operators' own). */
function operatorListener(): number {
  const blocks = mosquittoConf.split(/^listener /m).slice(1);
  const operators = blocks.filter((block) => /^cafile .*operator-ca\.crt$/m.test(block));
  expect(operators).toHaveLength(1);
  return Number(operators[0]!.split(/\s/)[0]);
}

const publishedPorts = (s: Service) => (s.ports ?? []).map((port) => Number(port.split(':').at(-1)));

describe('packaging/cloud/compose.yaml', () => {
  it('mounts every shipped file it names, and those files exist', () => {
    for (const s of Object.values(compose.services)) {
      for (const source of mounts(s).values()) {
        if (source.startsWith(CLOUD)) expect(existsSync(source), source).toBe(true);
      }
    }
    expect(mounts(service('mosquitto')).get('/etc/mosquitto/mosquitto.conf')).toBe(join(CLOUD, 'mosquitto/mosquitto.conf'));
    expect(mounts(service('k3s-server')).get('/etc/rancher/k3s/config.yaml')).toBe(join(CLOUD, 'k3s-server/config.yaml'));
  });

  it('publishes exactly the listeners of the shipped mosquitto.conf, and mounts every file and directory it reads', () => {
    const mosquitto = service('mosquitto');
    expect(mosquitto.command).toEqual(['mosquitto', '-c', '/etc/mosquitto/mosquitto.conf']);
    const listeners = directives(mosquittoConf, 'listener').map(Number);
    expect(listeners).toEqual([8883, 8884]);
    expect(publishedPorts(mosquitto).sort()).toEqual(listeners.sort());
    const files = ['cafile', 'certfile', 'keyfile', 'acl_file', 'persistence_location'].flatMap((name) => directives(mosquittoConf, name));
    expect(files.length).toBeGreaterThan(5);
    for (const file of files) expect(mounted(mosquitto, file.replace(/\/$/, '')), file).toBe(true);
    // The image's mosquitto user, who must own the persistence directory.
    expect(mosquitto.user).toBe('1883:1883');
  });

  it('runs the hub with the shipped hub.yaml at the path the systemd unit reads, valid for the real config schema', () => {
    const hub = service('hub');
    const configPath = hub.command.at(-1)!;
    expect(hub.command).toEqual(['/usr/local/bin/fleetlet', 'hub', '--config', configPath]);
    expect(hubUnit).toContain(`ExecStart=/usr/local/bin/fleetlet hub --config ${configPath}`);
    expect(mounts(hub).get(configPath)).toBe(join(CLOUD, 'hub.yaml'));
    expect(mounted(hub, '/usr/local/bin/fleetlet')).toBe(true);

    const parsed = ConfigSchema.safeParse(parse(readFileSync(join(CLOUD, 'hub.yaml'), 'utf8')));
    expect(parsed.error?.issues ?? []).toEqual([]);
    const config = parsed.data!;
    // The broker by the name its certificate carries, on the operator listener the ACL's hub user is meant for.
    const broker = new URL(config.broker.url);
    expect(broker.protocol).toBe('mqtts:');
    expect(service('mosquitto').networks?.default?.aliases).toContain(broker.hostname);
    expect(Number(broker.port)).toBe(operatorListener());
    expect(readFileSync(join(CLOUD, 'mosquitto/acl'), 'utf8')).toMatch(/^user fleetlet-hub\ntopic read fleetlet\/v1\/devices\/#$/m);
    for (const file of [config.broker.tls.caFile, config.broker.tls.certFile, config.broker.tls.keyFile]) {
      expect(file, 'a broker TLS file').toBeDefined();
      expect(mounted(hub, file!), file).toBe(true);
    }
    // The SQLite database's directory is a mount that outlives the container; the API port is published on loopback only.
    expect(config.hub.database.url).toBeUndefined();
    expect(mounts(hub).has(dirname(config.hub.database.file))).toBe(true);
    const apiPort = Number(config.hub.http.listen.split(':').at(-1));
    expect(hub.ports).toEqual([`127.0.0.1:${apiPort}:${apiPort}`]);
    // A stable replica id: the broker queues for the replica's sessions by it, and a container's host name changes.
    expect(config.hub.replicaId).toMatch(/^[a-z0-9]/);
  });

  it('runs an agentless k3s server with both token files of the shipped config mounted', () => {
    const k3s = service('k3s-server');
    expect(k3s.command).toEqual(['server']);
    expect(k3sConfig['disable-agent']).toBe(true);
    for (const key of ['token-file', 'agent-token-file']) {
      const file = k3sConfig[key] as string;
      expect(mounts(k3s).get(file), key).toBe(file);
    }
    expect(publishedPorts(k3s)).toEqual([6443]);
    expect(mounted(k3s, '/var/lib/rancher/k3s')).toBe(true);
  });
});
