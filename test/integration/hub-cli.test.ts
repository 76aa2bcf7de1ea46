import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubHttpSection } from '../../src/config/hub-http-schema.js';
import { HubApiServer } from '../../src/hub/api/server.js';
import { secretHash } from '../../src/hub/auth/secrets.js';
import type { HubDatabase } from '../../src/hub/db/open.js';
import { createLogger } from '../../src/lib/logger.js';
import { startCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { deviceRow, startHubApi, type TestHubApi } from '../helpers/hub-api.js';
import { createCa, issueCert, type KeyPair } from '../helpers/certs.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { hubDialects } from '../helpers/postgres.js';

const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' };

/** The bundled CLI with `input` on stdin; asynchronous, because the hub it talks to runs in this process. */
function fleetlet(args: string[], input = '', env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [FLEETLET_BUNDLE, ...args], { env: { ...ENV, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

describe.each(hubDialects())('hub accounts and the operator tools in --hub mode, on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  const dir = tempDir('fleetlet-hub-cli-');
  const config = join(dir.dir, 'hub.yaml');
  const tokenFile = join(dir.dir, 'token');
  let hub: HubDatabase;
  let server: HubApiServer;
  let url: string;

  beforeAll(async () => {
    const where = await databases.fresh();
    writeFileSync(config, `broker:\n  url: mqtts://broker.example.net:8883\nhub:\n  database:\n    file: ${where.file}\n${where.url ? `    url: ${where.url}\n` : ''}`);
    hub = await databases.open(where);
    server = new HubApiServer({ hub, http: HubHttpSection.parse({ listen: '127.0.0.1:0' }), logger: createLogger({ level: 'silent' }), streamPollMs: 100 });
    url = await server.start();
    await hub.db
      .insertInto('devices')
      .values([
        deviceRow('pi-home', { labels: { site: 'home' }, fleetlet_version: '0.3.0', k3s_healthy: 1, k3s_state: 'running' }),
        deviceRow('pi-office', { labels: { site: 'office' }, presence_state: 'offline' }),
      ])
      .execute();
  });
  afterAll(async () => {
    await server?.stop();
    await hub?.close();
    await databases.close();
    dir.cleanup();
  });

  it('adds an account with the password from stdin, stored as an scrypt hash, and refuses a second one of that name', async () => {
    const added = await fleetlet(['hub', 'user', 'add', 'alice', '--role', 'operator', '--config', config], 'a long enough password\n');
    expect({ code: added.code, stderr: added.stderr }).toEqual({ code: 0, stderr: '' });
    const stored = await hub.db.selectFrom('operators').select(['password_hash', 'role']).where('username', '=', 'alice').executeTakeFirstOrThrow();
    expect(stored.role).toBe('operator');
    expect(stored.password_hash).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    const again = await fleetlet(['hub', 'user', 'add', 'alice', '--role', 'viewer', '--config', config], 'another long password\n');
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('exists already');
    const short = await fleetlet(['hub', 'user', 'add', 'bob', '--role', 'viewer', '--config', config], 'short\n');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('at least 12 characters');
    const passwordFile = join(dir.dir, 'bob.pw');
    writeFileSync(passwordFile, 'bob password from a file\n', { mode: 0o600 });
    expect((await fleetlet(['hub', 'user', 'add', 'bob', '--role', 'viewer', '--password-file', passwordFile, '--config', config])).code).toBe(0);
  });

  it('takes no password on the command line', async () => {
    const refused = await fleetlet(['hub', 'user', 'add', 'carol', '--role', 'viewer', '--password', 'in argv for all to see', '--config', config]);
    expect(refused.code).toBe(64);
  });

  it('creates an API token shown once and stored only as its hash, which logs the user in', async () => {
    const created = await fleetlet(['hub', 'token', 'create', 'scripts', '--user', 'alice', '--config', config]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^flt_[A-Za-z0-9_-]{40,}$/);
    const rows = await hub.db.selectFrom('api_tokens').select(['token_hash', 'role']).execute();
    expect(rows).toEqual([{ token_hash: secretHash(token), role: 'operator' }]);
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const me = await fetch(`${url}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } });
    expect(await me.json()).toMatchObject({ username: 'alice', role: 'operator', via: 'token' });
    const audit = await hub.db.selectFrom('audit_log').select(['action', 'target']).orderBy('id').execute();
    expect(audit).toEqual(expect.arrayContaining([{ action: 'user.add', target: 'alice' }, { action: 'token.create', target: 'alice' }]));
  });

  it('lists devices from the hub with fleet devices --hub, filters applied by the hub', async () => {
    const table = await fleetlet(['fleet', 'devices', '--hub', url, '--token-file', tokenFile]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^pi-home\s+-\s+online\s+2026-11-02T00:00:00.000Z\s+0\.3\.0\s+-\s+healthy/m);
    expect(table.stdout).toContain('2 device(s), 1 online');
    const json = await fleetlet(['fleet', 'devices', '--hub', url, '--token-file', tokenFile, '--label', 'site=office', '--json'], '', {});
    expect((JSON.parse(json.stdout) as { deviceId: string }[]).map((d) => d.deviceId)).toEqual(['pi-office']);
    const online = await fleetlet(['fleet', 'devices', '--online', '--json'], '', { FLEET_HUB_URL: url, FLEET_HUB_TOKEN_FILE: tokenFile });
    expect((JSON.parse(online.stdout) as { deviceId: string }[]).map((d) => d.deviceId)).toEqual(['pi-home']);
  });

  it('says what is missing without a hub token or a broker, and names a refused token', async () => {
    const noToken = await fleetlet(['fleet', 'devices', '--hub', url]);
    expect([noToken.code, noToken.stderr]).toEqual([64, expect.stringContaining('--token-file')]);
    const neither = await fleetlet(['fleet', 'devices']);
    expect([neither.code, neither.stderr]).toEqual([64, expect.stringContaining('--broker')]);
    const badFile = join(dir.dir, 'bad-token');
    writeFileSync(badFile, 'flt_not-a-real-token-1234\n', { mode: 0o600 });
    const refused = await fleetlet(['fleet', 'devices', '--hub', url, '--token-file', badFile]);
    expect([refused.code, refused.stderr]).toEqual([1, expect.stringContaining('HTTP 401')]);
  });

  it('follows the hub stream with fleet watch --hub', async () => {
    const watch = startCli(['fleet', 'watch', '--hub', url, '--token-file', tokenFile, '--json', '--duration', '20']);
    try {
      await waitFor(() => watch.output().includes('watching'), 'the watch to be live', 30_000);
      const now = Date.now();
      await hub.db.insertInto('devices').values(deviceRow('pi-new', { last_seen_ms: now, presence_at_ms: now })).execute();
      await waitFor(() => watch.output().includes('"device.online"'), 'the online change of pi-new', 30_000);
      const line = watch.output().split('\n').find((l) => l.includes('"device.online"'))!;
      expect(JSON.parse(line)).toEqual({ type: 'device.online', deviceId: 'pi-new', at: new Date(now).toISOString() });
    } finally {
      watch.child.kill('SIGTERM');
      await watch.exited;
    }
  });
});

describe('fleet devices --hub over TLS', () => {
  const databases = new HubDatabases('sqlite');
  const dir = tempDir('fleetlet-hub-cli-tls-');
  let api: TestHubApi;
  let ca: KeyPair;

  beforeAll(async () => {
    ca = createCa(dir.dir, 'hub-ca');
    const cert = issueCert(ca, dir.dir, 'hub', { server: true, altNames: ['IP:127.0.0.1'] });
    api = await startHubApi(databases, { tlsCertFile: cert.cert, tlsKeyFile: cert.key });
    await api.hub.db.insertInto('devices').values(deviceRow('pi-tls')).execute();
    writeFileSync(join(dir.dir, 'token'), api.tokens.viewer, { mode: 0o600 });
  });
  afterAll(async () => {
    await api?.close();
    await databases.close();
    dir.cleanup();
  });

  it("trusts the hub's certificate through --hub-ca-file, and refuses it without", async () => {
    const args = ['fleet', 'devices', '--hub', api.url, '--token-file', join(dir.dir, 'token'), '--json'];
    const trusted = await fleetlet([...args, '--hub-ca-file', ca.cert]);
    expect(trusted.code).toBe(0);
    expect((JSON.parse(trusted.stdout) as { deviceId: string }[]).map((d) => d.deviceId)).toEqual(['pi-tls']);
    const untrusted = await fleetlet(args);
    expect([untrusted.code, untrusted.stderr]).toEqual([1, expect.stringContaining('cannot reach the hub')]);
  });
});
