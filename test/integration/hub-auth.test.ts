import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request as httpsRequest } from 'node:https';
import { HubDatabases } from '../helpers/hub-database.js';
import { hubDialects } from '../helpers/postgres.js';
import { deviceRow, PASSWORDS, startHubApi, type TestHubApi } from '../helpers/hub-api.js';
import { createCa, issueCert } from '../helpers/certs.js';
import { tempDir } from '../helpers/paths.js';
import { HubHttpSection } from '../../src/config/hub-http-schema.js';
import { createApiToken } from '../../src/hub/auth/accounts.js';
import { HubApiListenError } from '../../src/hub/api/errors.js';
import { HubApiServer } from '../../src/hub/api/server.js';
import { createLogger } from '../../src/lib/logger.js';

async function login(url: string, username: string, password: string, headers: Record<string, string> = {}) {
  return fetch(`${url}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ username, password }),
  });
}

function sessionCookie(res: Response): string {
  const cookie = res.headers.get('set-cookie') ?? '';
  return cookie.split(';')[0]!;
}

describe.each(hubDialects())('hub API authentication on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  let api: TestHubApi;

  beforeAll(async () => {
    api = await startHubApi(databases, { loginMaxFailures: 3 });
    await api.hub.db.insertInto('devices').values(deviceRow('pi-clone', { identity_conflict: 1, identity_conflict_at_ms: 5 })).execute();
  });
  afterAll(async () => {
    await api?.close();
    await databases.close();
  });

  it('listens on loopback unless told otherwise, and says when its address is taken', async () => {
    expect(HubHttpSection.parse({}).listen).toBe('127.0.0.1:8080');
    expect(new URL(api.url).hostname).toBe('127.0.0.1');
    const taken = new HubApiServer({ hub: api.hub, http: HubHttpSection.parse({ listen: new URL(api.url).host }), logger: createLogger({ level: 'silent' }) });
    await expect(taken.start()).rejects.toThrow(HubApiListenError);
    await expect(taken.start()).rejects.toThrow(/EADDRINUSE/);
  });

  it('refuses a request without credentials, with an unknown token, and a wrong password', async () => {
    expect((await fetch(`${api.url}/api/v1/devices`)).status).toBe(401);
    expect((await api.get('/api/v1/devices', 'flt_not-a-real-token-at-all')).status).toBe(401);
    const wrong = await login(api.url, 'viewer', 'not the password');
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();
  });

  it('sets an HttpOnly, SameSite=Strict session cookie (not Secure over plain http) that authenticates reads', async () => {
    const res = await login(api.url, 'viewer', PASSWORDS.viewer);
    expect(res.status).toBe(200);
    const attributes = (res.headers.get('set-cookie') ?? '').split(';').map((a) => a.trim());
    expect(attributes).toEqual(expect.arrayContaining(['HttpOnly', 'SameSite=Strict', 'Path=/']));
    expect(attributes).not.toContain('Secure');
    const me = await fetch(`${api.url}/api/v1/me`, { headers: { cookie: sessionCookie(res) } });
    expect(await me.json()).toMatchObject({ username: 'viewer', role: 'viewer', via: 'session' });
  });

  it('refuses a viewer a mutation with 403 and lets an operator make it, recorded in the audit log', async () => {
    const clear = (token: string) => fetch(`${api.url}/api/v1/devices/pi-clone/identity-conflict`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect((await clear(api.tokens.viewer)).status).toBe(403);
    expect((await (await api.get('/api/v1/devices/pi-clone')).json()) as object).toMatchObject({ identityConflict: true });
    expect((await clear(api.tokens.operator)).status).toBe(200);
    expect((await (await api.get('/api/v1/devices/pi-clone')).json()) as object).toMatchObject({ identityConflict: false });
    const audit = (await (await api.get('/api/v1/audit')).json()) as { entries: { actor: string; action: string; target: string }[] };
    expect(audit.entries).toContainEqual(expect.objectContaining({ actor: 'ops', action: 'device.identity-conflict.clear', target: 'pi-clone' }));
    expect(audit.entries.some((e) => e.actor === 'viewer' && e.action === 'device.identity-conflict.clear')).toBe(false);
    // The audit log names people and their addresses: operators only.
    expect((await api.get('/api/v1/audit', api.tokens.viewer)).status).toBe(403);
  });

  it('gives a token no more than its account: a viewer-role token of an operator cannot mutate', async () => {
    const limited = await createApiToken(api.hub, { username: 'ops', name: 'read-only', role: 'viewer' }, Date.now());
    expect((await api.get('/api/v1/devices', limited.token)).status).toBe(200);
    const res = await fetch(`${api.url}/api/v1/devices/pi-clone/identity-conflict`, { method: 'DELETE', headers: { authorization: `Bearer ${limited.token}` } });
    expect(res.status).toBe(403);
    await api.hub.db.updateTable('api_tokens').set({ revoked: 1 }).where('name', '=', 'read-only').execute();
    expect((await api.get('/api/v1/devices', limited.token)).status).toBe(401);
    const stored = await api.hub.db.selectFrom('api_tokens').select('token_hash').where('name', '=', 'read-only').executeTakeFirstOrThrow();
    expect(stored.token_hash).not.toContain(limited.token);
    expect(stored.token_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('takes a cookie mutation only from the hub\'s own Origin', async () => {
    const cookie = sessionCookie(await login(api.url, 'ops', PASSWORDS.ops));
    const clear = (headers: Record<string, string>) =>
      fetch(`${api.url}/api/v1/devices/pi-clone/identity-conflict`, { method: 'DELETE', headers: { cookie, ...headers } });
    expect((await clear({ origin: 'https://evil.example' })).status).toBe(403);
    expect((await clear({})).status).toBe(403);
    expect((await clear({ origin: api.url })).status).toBe(200);
    expect((await login(api.url, 'ops', PASSWORDS.ops, { origin: 'https://evil.example' })).status).toBe(403);
  });

  it('ends a session at logout', async () => {
    const cookie = sessionCookie(await login(api.url, 'ops', PASSWORDS.ops));
    const out = await fetch(`${api.url}/api/v1/logout`, { method: 'POST', headers: { cookie, origin: api.url } });
    expect(out.status).toBe(200);
    expect((await fetch(`${api.url}/api/v1/me`, { headers: { cookie } })).status).toBe(401);
  });

  it('rate-limits logins per account, also for the right password, and says when to retry', async () => {
    for (let i = 0; i < 3; i += 1) expect((await login(api.url, 'limited', 'wrong password')).status).toBe(401);
    const refused = await login(api.url, 'limited', 'wrong password');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    // The account under attack stays locked for the window even with its password; other accounts are not.
    await api.hub.db
      .insertInto('operators')
      .values({ username: 'limited', password_hash: 'x', role: 'viewer', created_at_ms: 0, disabled: 0 })
      .execute();
    expect((await login(api.url, 'limited', 'anything at all')).status).toBe(429);
    expect((await login(api.url, 'viewer', PASSWORDS.viewer)).status).toBe(200);
  });

  it('rate-limits logins per address across accounts', async () => {
    // 3 per account, 12 per address: the address limit bites on the 13th failure, whatever the name.
    let status = 0;
    for (let i = 0; i < 13 && status !== 429; i += 1) status = (await login(api.url, `guess-${i}`, 'wrong password')).status;
    expect(status).toBe(429);
    expect((await login(api.url, 'viewer', PASSWORDS.viewer)).status).toBe(429);
  });

  it('refuses oversized and non-JSON login bodies', async () => {
    const big = await fetch(`${api.url}/api/v1/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(100_000) });
    expect(big.status).toBe(413);
    const form = await fetch(`${api.url}/api/v1/login`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    expect(form.status).toBe(415);
  });
});

describe('hub API over TLS', () => {
  const databases = new HubDatabases('sqlite');
  const dir = tempDir('fleetlet-hub-tls-');
  let api: TestHubApi;
  let agent: Agent;

  beforeAll(async () => {
    const ca = createCa(dir.dir, 'hub-ca');
    const server = issueCert(ca, dir.dir, 'hub', { server: true, altNames: ['IP:127.0.0.1'] });
    agent = new Agent({ ca: (await import('node:fs')).readFileSync(ca.cert) });
    api = await startHubApi(databases, { tlsCertFile: server.cert, tlsKeyFile: server.key });
  });
  afterAll(async () => {
    await api?.close();
    await databases.close();
    dir.cleanup();
  });

  it('serves https and marks the session cookie Secure', async () => {
    expect(api.url.startsWith('https://127.0.0.1:')).toBe(true);
    const { status, cookie } = await new Promise<{ status: number; cookie: string }>((resolve, reject) => {
      const req = httpsRequest(`${api.url}/api/v1/login`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, cookie: (res.headers['set-cookie'] ?? []).join('') });
      });
      req.on('error', reject);
      req.end(JSON.stringify({ username: 'ops', password: PASSWORDS.ops }));
    });
    expect(status).toBe(200);
    expect(cookie.split(';').map((a) => a.trim())).toEqual(expect.arrayContaining(['HttpOnly', 'SameSite=Strict', 'Secure']));
  });
});
