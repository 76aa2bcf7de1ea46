import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HubEnrolmentSection } from '../../src/config/hub-enrolment-schema.js';
import { HubHttpSection } from '../../src/config/hub-http-schema.js';
import { HubAlertsSection } from '../../src/config/hub-alerts-schema.js';
import { certificateExpirySource } from '../../src/hub/alerts/certificate-source.js';
import { AlertEngine } from '../../src/hub/alerts/engine.js';
import { addOperator, createApiToken } from '../../src/hub/auth/accounts.js';
import { HubApiServer } from '../../src/hub/api/server.js';
import type { HubDatabase } from '../../src/hub/db/open.js';
import { createBootstrapToken } from '../../src/hub/enrolment/bootstrap-tokens.js';
import { EnrolmentAuthority } from '../../src/hub/enrolment/enrolment-authority.js';
import { certificatesExpiringWithin } from '../../src/hub/enrolment/expiring.js';
import { RevokedConnectionCloser } from '../../src/hub/enrolment/connection-takeover.js';
import { createFleetCa, loadFleetCa } from '../../src/hub/enrolment/fleet-ca.js';
import { createLogger } from '../../src/lib/logger.js';
import { EnrolResponse } from '../../src/protocol/enrolment.js';
import * as x509 from '../../src/lib/x509.js';
import { createCa, issueCert, type KeyPair } from '../helpers/certs.js';
import { csrPem, hubRequest, newDeviceKey, type DeviceKey } from '../helpers/enrolment.js';
import { deviceRow } from '../helpers/hub-api.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { hubDialects } from '../helpers/postgres.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from '../helpers/shipped-broker.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The hub as the fleet's CA, end to end: the real API server over HTTPS with the fleet CA `hub ca init` makes, CSRs
 * made here as a device makes them, and the shipped mosquitto config (device listener with require_certificate and
 * the hub's CRL) deciding whether a device's certificate gets in.
 */
const DAY = 86_400_000;

describe.skipIf(!mosquittoAvailable()).each(hubDialects())('hub enrolment on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  const temp = tempDir('fleetlet-enrol-');
  const dir = temp.dir;
  let hub: HubDatabase;
  let server: HubApiServer;
  let url: string;
  let hubCa: string;
  let broker: TestBroker;
  let brokerTrust: KeyPair;
  let operator: KeyPair;
  let operatorPort: number;
  let operatorToken: string;
  let viewerToken: string;
  let clockOffset = 0;
  const now = () => Date.now() + clockOffset;
  const crlPath = join(dir, 'crl.pem');

  beforeAll(async () => {
    chmodSync(dir, 0o755);
    hub = await databases.open();
    const fleetCa = await createFleetCa(join(dir, 'fleet-ca'), { commonName: 'test fleet CA', days: 30, now: new Date() });
    const tlsCa = createCa(dir, 'tls-ca');
    brokerTrust = tlsCa;
    const hubTls = issueCert(tlsCa, dir, 'hub', { server: true, altNames: ['IP:127.0.0.1'] });
    hubCa = readFileSync(tlsCa.cert, 'utf8');
    const config = HubEnrolmentSection.parse({ caCertFile: fleetCa.certFile, caKeyFile: fleetCa.keyFile, crlPath, maxFailures: 1000 });
    const authority = new EnrolmentAuthority({ hub, issuer: await loadFleetCa(fleetCa), config });
    await authority.writeRevocationList(now());
    server = new HubApiServer({
      hub,
      http: HubHttpSection.parse({ listen: '127.0.0.1:0', tlsCertFile: hubTls.cert, tlsKeyFile: hubTls.key }),
      logger: createLogger({ level: 'silent' }),
      now,
      enrolment: authority,
    });
    url = await server.start();
    await addOperator(hub, 'ops', 'operator', 'correct horse battery', now());
    await addOperator(hub, 'viewer', 'viewer', 'viewer password 1', now());
    operatorToken = (await createApiToken(hub, { username: 'ops', name: 'test' }, now())).token;
    viewerToken = (await createApiToken(hub, { username: 'viewer', name: 'test' }, now())).token;

    // The shipped broker config: cafile = the fleet CA, crlfile = the CRL the hub writes.
    const brokerCert = issueCert(tlsCa, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
    copyFileSync(fleetCa.certFile, join(dir, 'ca.crt'));
    copyFileSync(brokerCert.cert, join(dir, 'broker.crt'));
    copyFileSync(brokerCert.key, join(dir, 'broker.key'));
    copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(dir, 'acl'));
    const operatorCa = createCa(dir, 'operator-ca');
    operator = issueCert(operatorCa, dir, 'fleet-operator');
    copyFileSync(operatorCa.cert, join(dir, 'operator-ca.crt'));
    for (const name of ['ca.crt', 'broker.crt', 'broker.key', 'acl', 'operator-ca.crt']) chmodSync(join(dir, name), 0o644);
    const shipped = shippedMosquittoConfig(dir, { crl: true });
    operatorPort = await freePort();
    broker = await startMosquitto({ ...shipped, extraListeners: [{ port: operatorPort, lines: shipped.operatorListenerLines }] });
  });

  afterEach(() => {
    clockOffset = 0;
  });

  afterAll(async () => {
    await broker?.close();
    await server?.stop();
    await hub?.close();
    await databases.close();
    temp.cleanup();
  });

  const token = async (options: { uses?: number; autoApprove?: boolean; expiresInMs?: number; name?: string } = {}) =>
    (await createBootstrapToken(
      hub,
      { name: options.name ?? 'batch', uses: options.uses ?? 1, autoApprove: options.autoApprove ?? true, expiresInMs: options.expiresInMs ?? 7 * DAY },
      'test',
      now(),
    )).token;

  const enrol = async (bearer: string, deviceId: string, key: DeviceKey, csr?: string) =>
    hubRequest(url, hubCa, 'POST', '/api/v1/enrol', bearer, { schemaVersion: 1, deviceId, csrPem: csr ?? (await csrPem(deviceId, key)) });
  const renew = async (credential: string, deviceId: string, key: DeviceKey) =>
    hubRequest(url, hubCa, 'POST', '/api/v1/enrol/renew', credential, { schemaVersion: 1, deviceId, csrPem: await csrPem(deviceId, key) });

  function issued(answer: { status: number; body: unknown }) {
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    const body = EnrolResponse.parse(answer.body);
    if (body.status !== 'issued') throw new Error(`expected issued, got ${body.status}`);
    return body;
  }

  /** An MQTT connection to the device listener, with this certificate or none. */
  const connectDevice = (certificatePem: string | undefined, key: DeviceKey) =>
    mqtt.connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
      ca: readFileSync(brokerTrust.cert),
      ...(certificatePem ? { cert: certificatePem, key: key.privateKeyPem } : {}),
      reconnectPeriod: 0,
      connectTimeout: 5000,
      protocolVersion: 4,
    });

  /** Connects to the device listener with this certificate: resolves true when the broker took it, false when it refused. */
  async function brokerAccepts(certificatePem: string | undefined, key: DeviceKey): Promise<boolean> {
    try {
      const client = await connectDevice(certificatePem, key);
      await client.endAsync();
      return true;
    } catch {
      return false;
    }
  }

  it('enrols with an auto-approve token: a certificate whose CN is the device id, chained to the fleet CA, that the broker accepts (and refuses a client without one)', async () => {
    const key = await newDeviceKey();
    const body = issued(await enrol(await token(), 'pi-enrol-1', key));
    const cert = new x509.X509Certificate(body.certificatePem);
    expect(cert.subject).toBe('CN=pi-enrol-1');
    expect(body.caPem).toBe(readFileSync(join(dir, 'ca.crt'), 'utf8'));
    expect(await cert.verify({ publicKey: new x509.X509Certificate(body.caPem).publicKey })).toBe(true);
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.clientAuth]);
    expect(cert.notBefore.getTime()).toBeLessThan(Date.now());
    expect(Date.parse(body.notAfter) - Date.now()).toBeGreaterThan(29 * DAY);
    expect(await brokerAccepts(body.certificatePem, key)).toBe(true);
    expect(await brokerAccepts(undefined, key)).toBe(false);
  });

  it('gives a second device from the same image (same token) its own, different certificate', async () => {
    const bootstrap = await token({ uses: 2 });
    const [keyA, keyB] = [await newDeviceKey(), await newDeviceKey()];
    const a = issued(await enrol(bootstrap, 'pi-image-a', keyA));
    const b = issued(await enrol(bootstrap, 'pi-image-b', keyB));
    const [certA, certB] = [new x509.X509Certificate(a.certificatePem), new x509.X509Certificate(b.certificatePem)];
    expect(certA.subject).toBe('CN=pi-image-a');
    expect(certB.subject).toBe('CN=pi-image-b');
    expect(certA.serialNumber).not.toBe(certB.serialNumber);
    expect(a.renewalCredential).not.toBe(b.renewalCredential);
  });

  it('puts a device on the pending list for a manual token until an operator approves it', async () => {
    const key = await newDeviceKey();
    const bootstrap = await token({ autoApprove: false, uses: 1 });
    const first = await enrol(bootstrap, 'pi-pending', key);
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ status: 'pending', deviceId: 'pi-pending' });
    // Asking again while pending does not take another use of the one-use token.
    expect((await enrol(bootstrap, 'pi-pending', key)).status).toBe(202);
    const list = await hubRequest(url, hubCa, 'GET', '/api/v1/enrolments?status=pending', operatorToken);
    const pending = (list.body.enrolments as { id: number; deviceId: string }[]).find((e) => e.deviceId === 'pi-pending');
    expect(pending).toBeDefined();
    expect((await hubRequest(url, hubCa, 'GET', '/api/v1/enrolments', viewerToken)).status).toBe(403);
    expect((await hubRequest(url, hubCa, 'POST', `/api/v1/enrolments/${pending!.id}/approve`, viewerToken)).status).toBe(403);
    const approved = await hubRequest(url, hubCa, 'POST', `/api/v1/enrolments/${pending!.id}/approve`, operatorToken);
    expect(approved.body).toMatchObject({ status: 'approved', decidedBy: 'ops' });
    expect(new x509.X509Certificate(issued(await enrol(bootstrap, 'pi-pending', key)).certificatePem).subject).toBe('CN=pi-pending');
  });

  it('refuses a denied device', async () => {
    const key = await newDeviceKey();
    const bootstrap = await token({ autoApprove: false });
    expect((await enrol(bootstrap, 'pi-denied', key)).status).toBe(202);
    const list = await hubRequest(url, hubCa, 'GET', '/api/v1/enrolments?status=pending', operatorToken);
    const request = (list.body.enrolments as { id: number; deviceId: string }[]).find((e) => e.deviceId === 'pi-denied')!;
    expect((await hubRequest(url, hubCa, 'POST', `/api/v1/enrolments/${request.id}/deny`, operatorToken)).status).toBe(200);
    const refused = await enrol(bootstrap, 'pi-denied', key);
    expect(refused.status).toBe(403);
    expect(refused.body.reason).toMatch(/denied/);
  });

  it("enforces a token's use count, its expiry and its revocation", async () => {
    const once = await token({ uses: 1 });
    issued(await enrol(once, 'pi-uses-1', await newDeviceKey()));
    const usedUp = await enrol(once, 'pi-uses-2', await newDeviceKey());
    expect(usedUp.status).toBe(403);
    expect(usedUp.body.reason).toMatch(/no uses left/);

    const shortLived = await token({ expiresInMs: 60_000 });
    clockOffset = 120_000;
    const expired = await enrol(shortLived, 'pi-late', await newDeviceKey());
    expect(expired.status).toBe(403);
    expect(expired.body.reason).toMatch(/expired/);
    clockOffset = 0;

    const revokedToken = await token({ uses: 5, name: 'revoke-me' });
    const { revokeBootstrapToken } = await import('../../src/hub/enrolment/bootstrap-tokens.js');
    await revokeBootstrapToken(hub, 'revoke-me', 'test', now());
    const revoked = await enrol(revokedToken, 'pi-revoked-token', await newDeviceKey());
    expect(revoked.status).toBe(403);
    expect(revoked.body.reason).toMatch(/revoked/);
  });

  it("refuses a forged CSR for an enrolled device's id, a CSR with another CN, and one not signed by its own key", async () => {
    const bootstrap = await token({ uses: 10 });
    issued(await enrol(bootstrap, 'pi-victim', await newDeviceKey()));
    const attacker = await newDeviceKey();
    const forged = await enrol(bootstrap, 'pi-victim', attacker);
    expect(forged.status).toBe(403);
    expect(forged.body.reason).toMatch(/enrolled with another key/);

    const wrongCn = await enrol(bootstrap, 'pi-honest', attacker, await csrPem('pi-victim', attacker));
    expect(wrongCn.status).toBe(403);
    expect(wrongCn.body.reason).toMatch(/CN=pi-honest/);

    const notPossessed = await enrol(bootstrap, 'pi-nokey', attacker, await csrPem('pi-nokey', attacker, await newDeviceKey()));
    expect(notPossessed.status).toBe(403);
    expect(notPossessed.body.reason).toMatch(/not signed by its own key/);
  });

  it('gives one device id to exactly one key when two enrolments of it race', async () => {
    const bootstrap = await token({ uses: 10 });
    const answers = await Promise.all([1, 2, 3, 4].map(async () => enrol(bootstrap, 'pi-race', await newDeviceKey())));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 403, 403, 403]);
  });

  it('renews with the renewal credential, which rotates (the old one is refused after), also with a new key', async () => {
    const key = await newDeviceKey();
    const first = issued(await enrol(await token(), 'pi-renew', key));
    const second = issued(await renew(first.renewalCredential, 'pi-renew', key));
    expect(second.renewalCredential).not.toBe(first.renewalCredential);
    expect(new x509.X509Certificate(second.certificatePem).serialNumber).not.toBe(new x509.X509Certificate(first.certificatePem).serialNumber);
    expect((await renew(first.renewalCredential, 'pi-renew', key)).status).toBe(403);
    const newKey = await newDeviceKey();
    const third = issued(await renew(second.renewalCredential, 'pi-renew', newKey));
    expect(await brokerAccepts(third.certificatePem, newKey)).toBe(true);
    // The credential renews only its own device.
    const other = await renew(third.renewalCredential, 'pi-enrol-1', newKey);
    expect(other.status).toBe(403);
  });

  it('renews a device that was offline past its certificate expiry, with the credential issued with it', async () => {
    const key = await newDeviceKey();
    const first = issued(await enrol(await token(), 'pi-offline', key));
    clockOffset = 45 * DAY;
    expect(Date.parse(first.notAfter)).toBeLessThan(now());
    const expiring = await certificatesExpiringWithin(hub, 0, now());
    expect(expiring.map((e) => e.deviceId)).toContain('pi-offline');
    const renewed = issued(await renew(first.renewalCredential, 'pi-offline', key));
    expect(Date.parse(renewed.notAfter)).toBeGreaterThan(now() + 29 * DAY);
  });

  it('lists devices whose current certificate expires within N days, soonest first, without revoked ones', async () => {
    const key = await newDeviceKey();
    issued(await enrol(await token(), 'pi-expiry', key));
    const in31 = (await certificatesExpiringWithin(hub, 31, now())).map((e) => e.deviceId);
    expect(in31).toContain('pi-expiry');
    expect((await certificatesExpiringWithin(hub, 29, now())).map((e) => e.deviceId)).not.toContain('pi-expiry');
    const all = await certificatesExpiringWithin(hub, 31, now());
    expect(all.map((e) => e.notAfterMs)).toEqual([...all.map((e) => e.notAfterMs)].sort((a, b) => a - b));
  });

  it('raises certificate-expiring for a certificate that did not renew (critical once ended) and resolves it after the renewal', async () => {
    const engine = new AlertEngine({
      hub,
      config: HubAlertsSection.parse({ certificateExpiring: { withinDays: 7 } }),
      log: createLogger({ level: 'silent' }),
      now,
      sources: [certificateExpirySource(HubAlertsSection.parse({}).certificateExpiring, (days, at) => certificatesExpiringWithin(hub, days, at))],
    });
    const open = async () =>
      hub.db.selectFrom('alerts').select(['severity', 'summary', 'state']).where('rule', '=', 'certificate-expiring').where('subject', '=', 'pi-alert').where('state', '=', 'open').execute();
    const key = await newDeviceKey();
    const first = issued(await enrol(await token(), 'pi-alert', key));
    await engine.evaluate();
    expect(await open()).toEqual([]);
    clockOffset = 25 * DAY;
    await engine.evaluate();
    expect(await open()).toEqual([expect.objectContaining({ severity: 'warning', summary: expect.stringMatching(/^certificate expires in [45] day/) })]);
    clockOffset = 31 * DAY;
    await engine.evaluate();
    expect(await open()).toEqual([expect.objectContaining({ severity: 'critical', summary: expect.stringMatching(/^certificate expired/) })]);
    issued(await renew(first.renewalCredential, 'pi-alert', key));
    await engine.evaluate();
    expect(await open()).toEqual([]);
  });

  it('revokes a device: the broker refuses its certificate, its renewal credential dies, its k3s node is reported for removal', async () => {
    const key = await newDeviceKey();
    const body = issued(await enrol(await token(), 'pi-stolen', key));
    await hub.db.insertInto('devices').values(deviceRow('pi-stolen', { inventory_json: JSON.stringify({ nodeName: 'node-stolen' }) })).execute();
    expect(await brokerAccepts(body.certificatePem, key)).toBe(true);

    expect((await hubRequest(url, hubCa, 'POST', '/api/v1/devices/pi-stolen/revoke', viewerToken)).status).toBe(403);
    const revoked = await hubRequest(url, hubCa, 'POST', '/api/v1/devices/pi-stolen/revoke', operatorToken);
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ deviceId: 'pi-stolen', certificates: 1, nodeRemoval: 'node-stolen' });
    const serial = new x509.X509Certificate(body.certificatePem).serialNumber.toUpperCase();
    const crlText = execFileSync('openssl', ['crl', '-in', crlPath, '-noout', '-text'], { encoding: 'utf8' });
    expect(crlText).toContain(serial);

    broker.reload!();
    await waitFor(async () => !(await brokerAccepts(body.certificatePem, key)), 'the broker to refuse the revoked certificate');
    expect((await renew(body.renewalCredential, 'pi-stolen', key)).status).toBe(403);
    const again = await enrol(await token(), 'pi-stolen', await newDeviceKey());
    expect(again.body.reason).toMatch(/revoked/);

    const device = await hubRequest(url, hubCa, 'GET', '/api/v1/devices/pi-stolen', viewerToken);
    expect(device.body.enrolment).toMatchObject({ state: 'revoked', nodeRemoval: 'node-stolen', certificateSerial: new x509.X509Certificate(body.certificatePem).serialNumber.toLowerCase() });
    const audit = await hubRequest(url, hubCa, 'GET', '/api/v1/audit?limit=200', operatorToken);
    expect(JSON.stringify(audit.body)).toContain('device.revoke');
    // Another device is not touched by the reload.
    const otherKey = await newDeviceKey();
    expect(await brokerAccepts(issued(await enrol(await token(), 'pi-innocent', otherKey)).certificatePem, otherKey)).toBe(true);
  });

  it('keeps a connection opened before the revocation (mosquitto 2.0 does not drop it on reload); taking over its client id from the operator listener ends it for good', async () => {
    const key = await newDeviceKey();
    const body = issued(await enrol(await token(), 'pi-connected', key));
    const device = await connectDevice(body.certificatePem, key);
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    // The reload is seen through another revoked device: a connection with pi-connected's own certificate would take
    // over its client id, and so end the very connection this test watches.
    const probeKey = await newDeviceKey();
    const probe = issued(await enrol(await token(), 'pi-probe', probeKey));
    expect((await hubRequest(url, hubCa, 'POST', '/api/v1/devices/pi-probe/revoke', operatorToken)).status).toBe(200);
    expect((await hubRequest(url, hubCa, 'POST', '/api/v1/devices/pi-connected/revoke', operatorToken)).status).toBe(200);
    broker.reload!();
    await waitFor(async () => !(await brokerAccepts(probe.certificatePem, probeKey)), 'the broker to refuse a revoked certificate');
    // Still connected: its own topic still takes a QoS 1 publish.
    await device.publishAsync('fleetlet/v1/devices/pi-connected/status', '{}', { qos: 1 });
    expect(device.connected).toBe(true);

    const takeover = await mqtt.connectAsync(`mqtts://127.0.0.1:${operatorPort}`, {
      ca: readFileSync(brokerTrust.cert),
      cert: readFileSync(operator.cert),
      key: readFileSync(operator.key),
      clientId: 'pi-connected',
      reconnectPeriod: 0,
      protocolVersion: 4,
    });
    await takeover.endAsync();
    await closed;
    expect(device.connected).toBe(false);
    expect(await brokerAccepts(body.certificatePem, key)).toBe(false);
    await device.endAsync(true);
  });

  it('limits refused attempts per token and per address (429 with Retry-After), in the database', async () => {
    // A hub of its own on a fresh database: the attempts counted by the other tests stay out of it.
    const limited = await databases.open();
    const fleetCa = { certFile: join(dir, 'fleet-ca', 'ca.crt'), keyFile: join(dir, 'fleet-ca', 'ca.key') };
    const config = HubEnrolmentSection.parse({ caCertFile: fleetCa.certFile, caKeyFile: fleetCa.keyFile, crlPath: join(dir, 'limited-crl.pem'), maxFailures: 2 });
    const authority = new EnrolmentAuthority({ hub: limited, issuer: await loadFleetCa(fleetCa), config });
    // A clock standing at the start of a counting window, so the attempts cannot straddle two.
    const windowStart = Math.ceil(Date.now() / (config.windowSeconds * 1000)) * config.windowSeconds * 1000 + 1000;
    const limitedServer = new HubApiServer({
      hub: limited,
      http: HubHttpSection.parse({ listen: '127.0.0.1:0' }),
      logger: createLogger({ level: 'silent' }),
      enrolment: authority,
      now: () => windowStart,
    });
    const limitedUrl = await limitedServer.start();
    try {
      const post = async (bearer: string, deviceId: string) => {
        const res = await fetch(`${limitedUrl}/api/v1/enrol`, {
          method: 'POST',
          headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
          body: JSON.stringify({ schemaVersion: 1, deviceId, csrPem: await csrPem('someone-else', await newDeviceKey()) }),
        });
        return { status: res.status, retryAfter: res.headers.get('retry-after') };
      };
      const good = (await createBootstrapToken(limited, { name: 'limited', uses: 10, autoApprove: true, expiresInMs: DAY }, 'test', Date.now())).token;
      // Per token: two refusals (wrong CN), then the token is locked for the window.
      expect((await post(good, 'pi-a')).status).toBe(403);
      expect((await post(good, 'pi-b')).status).toBe(403);
      const locked = await post(good, 'pi-c');
      expect(locked.status).toBe(429);
      expect(Number(locked.retryAfter)).toBeGreaterThan(0);
      // Per address: four times the token limit in all, whatever the token.
      const statuses: number[] = [];
      for (let i = 0; i < 7; i += 1) statuses.push((await post(`fle_guess${i}abcdefgh`, `pi-g${i}`)).status);
      expect(statuses.slice(0, 6)).toEqual([403, 403, 403, 403, 403, 403]);
      expect(statuses[6]).toBe(429);
    } finally {
      await limitedServer.stop();
      await limited.close();
    }
  });

  it("ends a revoked device's open connection by itself (hub.enrolment.disconnectAfterRevokeSeconds), after which it cannot come back", async () => {
    const fleetCa = { certFile: join(dir, 'fleet-ca', 'ca.crt'), keyFile: join(dir, 'fleet-ca', 'ca.key') };
    const config = HubEnrolmentSection.parse({ caCertFile: fleetCa.certFile, caKeyFile: fleetCa.keyFile, crlPath, disconnectAfterRevokeSeconds: 2, maxFailures: 1000 });
    const closer = new RevokedConnectionCloser({
      brokerUrl: `mqtts://127.0.0.1:${operatorPort}`,
      base: { ca: readFileSync(brokerTrust.cert), cert: readFileSync(operator.cert), key: readFileSync(operator.key) },
      delaySeconds: config.disconnectAfterRevokeSeconds,
      logger: createLogger({ level: 'silent' }),
    });
    const authority = new EnrolmentAuthority({ hub, issuer: await loadFleetCa(fleetCa), config, closeConnection: (id) => closer.schedule(id) });
    const closing = new HubApiServer({ hub, http: HubHttpSection.parse({ listen: '127.0.0.1:0' }), logger: createLogger({ level: 'silent' }), enrolment: authority });
    const closingUrl = await closing.start();
    try {
      const key = await newDeviceKey();
      const body = issued(await enrol(await token(), 'pi-auto-closed', key));
      const device = await connectDevice(body.certificatePem, key);
      const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
      const revoked = await fetch(`${closingUrl}/api/v1/devices/pi-auto-closed/revoke`, { method: 'POST', headers: { authorization: `Bearer ${operatorToken}` } });
      expect(revoked.status).toBe(200);
      broker.reload!();
      await closed;
      expect(await brokerAccepts(body.certificatePem, key)).toBe(false);
      await device.endAsync(true);
    } finally {
      closer.stop();
      await closing.stop();
    }
  });

  it('answers 503 at the enrol routes of a hub without a CA (hub.enrolment unset)', async () => {
    const plain = new HubApiServer({ hub, http: HubHttpSection.parse({ listen: '127.0.0.1:0' }), logger: createLogger({ level: 'silent' }) });
    const plainUrl = await plain.start();
    try {
      for (const path of ['/api/v1/enrol', '/api/v1/enrol/renew']) {
        const res = await fetch(`${plainUrl}${path}`, { method: 'POST', headers: { authorization: 'Bearer fle_whatever-token', 'content-type': 'application/json' }, body: '{}' });
        expect(res.status, path).toBe(503);
        expect(((await res.json()) as { error: string }).error).toMatch(/hub.enrolment.caCertFile/);
      }
    } finally {
      await plain.stop();
    }
  });

  it('keeps credentials in their place: a bootstrap token opens no other route, and an API token cannot enrol', async () => {
    const bootstrap = await token({ uses: 5 });
    for (const path of ['/api/v1/devices', '/api/v1/enrolments', '/api/v1/me']) {
      expect((await hubRequest(url, hubCa, 'GET', path, bootstrap)).status, path).toBe(401);
    }
    expect((await hubRequest(url, hubCa, 'POST', '/api/v1/devices/pi-enrol-1/revoke', bootstrap)).status).toBe(401);
    const withApiToken = await enrol(operatorToken, 'pi-api-token', await newDeviceKey());
    expect(withApiToken.status).toBe(403);
    expect(withApiToken.body).toMatchObject({ status: 'refused' });
    expect((await hubRequest(url, hubCa, 'POST', '/api/v1/enrol', undefined, {})).status).toBe(401);
  });
});
