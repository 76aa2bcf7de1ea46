import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as x509 from '../../src/lib/x509.js';
import { EnrolResponse } from '../../src/protocol/enrolment.js';
import { createCa, issueCert } from '../helpers/certs.js';
import { csrPem, hubRequest, newDeviceKey } from '../helpers/enrolment.js';
import { startHubProcess, writeHubConfig, type HubProcess } from '../helpers/hub-process.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' };

function fleetlet(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [FLEETLET_BUNDLE, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/**
 * The operator's commands (`fleetlet hub ca|enrol-token|enrolment|device`) from the bundle, and a real `fleetlet hub`
 * process serving enrolment over HTTPS with the CA they made: the same code the single binary runs.
 */
describe.skipIf(!mosquittoAvailable())('fleetlet hub as the fleet CA, from the command line', () => {
  const temp = tempDir('fleetlet-enrol-cli-');
  const dir = temp.dir;
  const caDir = join(dir, 'ca');
  const crlPath = join(dir, 'fleet-crl.pem');
  let broker: TestBroker;
  let hub: HubProcess | undefined;
  let config: string;
  let tlsCa: string;

  beforeAll(async () => {
    broker = await startMosquitto();
    const tls = createCa(dir, 'tls-ca');
    tlsCa = readFileSync(tls.cert, 'utf8');
    const hubTls = issueCert(tls, dir, 'hub', { server: true, altNames: ['IP:127.0.0.1'] });
    config = writeHubConfig({
      dir,
      brokerUrl: broker.url,
      database: { file: join(dir, 'hub.db') },
      replicaId: 'ca',
      extra: {
        http: { listen: '127.0.0.1:0', tlsCertFile: hubTls.cert, tlsKeyFile: hubTls.key },
        enrolment: { caCertFile: join(caDir, 'ca.crt'), caKeyFile: join(caDir, 'ca.key'), crlPath, disconnectAfterRevokeSeconds: 1 },
      },
    });
  });

  afterAll(async () => {
    await hub?.kill('SIGTERM');
    await broker?.close();
    temp.cleanup();
  });

  it('makes the fleet CA once: a P-256 CA certificate and a key of mode 0600; a second init refuses to overwrite it', async () => {
    const made = await fleetlet(['hub', 'ca', 'init', '--dir', caDir, '--name', 'cli fleet CA']);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toContain(`caKeyFile: ${join(caDir, 'ca.key')}`);
    expect(statSync(join(caDir, 'ca.key')).mode & 0o777).toBe(0o600);
    const text = execFileSync('openssl', ['x509', '-in', join(caDir, 'ca.crt'), '-noout', '-text'], { encoding: 'utf8' });
    expect(text).toMatch(/CA:TRUE/);
    expect(text).toMatch(/prime256v1|P-256/);
    expect(text).toContain('CN = cli fleet CA');
    const again = await fleetlet(['hub', 'ca', 'init', '--dir', caDir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists already/);
  });

  it('imports an existing CA only with its own key', async () => {
    const existing = createCa(dir, 'existing-ca');
    const other = createCa(dir, 'other-ca');
    const mismatched = await fleetlet(['hub', 'ca', 'init', '--dir', join(dir, 'imported-bad'), '--cert', existing.cert, '--key', other.key]);
    expect(mismatched.code).toBe(1);
    expect(mismatched.stderr).toMatch(/is not the private key of/);
    const imported = await fleetlet(['hub', 'ca', 'init', '--dir', join(dir, 'imported'), '--cert', existing.cert, '--key', existing.key]);
    expect(imported.code, imported.stderr).toBe(0);
    const der = (file: string) => Buffer.from(new x509.X509Certificate(readFileSync(file, 'utf8')).rawData).toString('hex');
    expect(der(join(dir, 'imported', 'ca.crt'))).toBe(der(existing.cert));
    expect(statSync(join(dir, 'imported', 'ca.key')).mode & 0o777).toBe(0o600);
  });

  it('enrols a device through the hub process over HTTPS with a CLI token, after a CLI approval, and revokes it into the CRL', async () => {
    const created = await fleetlet(['hub', 'enrol-token', 'create', '--config', config, '--name', 'first-pi', '--uses', '1', '--expires', '1d']);
    expect(created.code, created.stderr).toBe(0);
    const token = created.stdout.trim();
    expect(token).toMatch(/^fle_[A-Za-z0-9_-]{40,}$/);
    expect(created.stderr).toMatch(/enrolment approve/);

    hub = startHubProcess(config);
    await hub.started();
    await waitFor(() => /"url":"(https:\/\/[^"]+)".*hub API listening/.test(hub!.output()), 'the hub API to listen', 30_000);
    const url = /"url":"(https:\/\/[^"]+)".*hub API listening/.exec(hub.output())![1]!;
    // Written at start: the broker needs a CRL before the first revocation.
    expect(execFileSync('openssl', ['crl', '-in', crlPath, '-noout', '-CAfile', join(caDir, 'ca.crt')], { encoding: 'utf8', stdio: 'pipe' })).toBe('');

    const key = await newDeviceKey();
    const request = { schemaVersion: 1, deviceId: 'pi-cli', csrPem: await csrPem('pi-cli', key) };
    expect((await hubRequest(url, tlsCa, 'POST', '/api/v1/enrol', token, request)).status).toBe(202);
    const pending = await fleetlet(['hub', 'enrolment', 'list', '--config', config, '--status', 'pending', '--json']);
    const [entry] = JSON.parse(pending.stdout) as { id: number; deviceId: string }[];
    expect(entry).toMatchObject({ deviceId: 'pi-cli' });
    const approved = await fleetlet(['hub', 'enrolment', 'approve', String(entry!.id), '--config', config]);
    expect(approved.stdout).toContain('pi-cli: approved');
    const answer = await hubRequest(url, tlsCa, 'POST', '/api/v1/enrol', token, request);
    const body = EnrolResponse.parse(answer.body);
    if (body.status !== 'issued') throw new Error(`expected issued: ${JSON.stringify(answer.body)}`);
    expect(new x509.X509Certificate(body.certificatePem).subject).toBe('CN=pi-cli');

    const tokens = await fleetlet(['hub', 'enrol-token', 'list', '--config', config]);
    expect(tokens.stdout).toMatch(/first-pi\t1\/1 used\tused up/);

    const revoked = await fleetlet(['hub', 'device', 'revoke', 'pi-cli', '--config', config]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain('kubectl delete node pi-cli');
    expect(revoked.stdout).toContain("ended pi-cli's broker connection");
    const crl = execFileSync('openssl', ['crl', '-in', crlPath, '-noout', '-text'], { encoding: 'utf8' });
    expect(crl).toContain(new x509.X509Certificate(body.certificatePem).serialNumber.toUpperCase());
    const renewed = await hubRequest(url, tlsCa, 'POST', '/api/v1/enrol/renew', body.renewalCredential, request);
    expect(renewed.status).toBe(403);

    expect((await fleetlet(['hub', 'enrol-token', 'revoke', 'first-pi', '--config', config])).stdout).toContain('revoked 1');
    expect((await fleetlet(['hub', 'device', 'release', 'pi-cli', '--config', config])).stdout).toContain('released pi-cli');
  });

  it('refuses a malformed --expires and --uses as usage errors (exit 64)', async () => {
    expect((await fleetlet(['hub', 'enrol-token', 'create', '--config', config, '--expires', 'soon'])).code).toBe(64);
    expect((await fleetlet(['hub', 'enrol-token', 'create', '--config', config, '--uses', '0'])).code).toBe(64);
  });
});
