import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueCert, type KeyPair } from '../helpers/certs.js';
import { runCli } from '../helpers/cli.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from '../helpers/shipped-broker.js';

/** The operator's connection mistakes, through the real CLI against the shipped mosquitto config (mutual TLS, ACL). */
describe.skipIf(!mosquittoAvailable())('fleet tools connecting to a broker', () => {
  let broker: TestBroker;
  let url: string;
  let dir: { dir: string; cleanup: () => void };
  let pki: { ca: KeyPair; otherCa: KeyPair; operator: KeyPair; device: KeyPair };

  beforeAll(async () => {
    dir = tempDir('fleetlet-connect-');
    const d = dir.dir;
    const ca = createCa(d, 'fleet-ca');
    const server = issueCert(ca, d, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
    copyFileSync(ca.cert, join(d, 'ca.crt'));
    copyFileSync(server.cert, join(d, 'broker.crt'));
    copyFileSync(server.key, join(d, 'broker.key'));
    copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(d, 'acl'));
    chmodSync(d, 0o755);
    for (const name of ['ca.crt', 'broker.crt', 'broker.key', 'acl']) chmodSync(join(d, name), 0o644);
    pki = { ca, otherCa: createCa(d, 'other-ca'), operator: issueCert(ca, d, 'fleet-operator'), device: issueCert(ca, d, 'pi-1') };
    const shipped = shippedMosquittoConfig(d);
    broker = await startMosquitto({ globalLines: shipped.globalLines, listenerLines: shipped.listenerLines });
    url = `mqtts://127.0.0.1:${broker.port}`;
  });

  afterAll(async () => {
    await broker?.close();
    dir?.cleanup();
  });

  const tls = (ca: string, pair: KeyPair) => ['--ca-file', ca, '--cert-file', pair.cert, '--tls-key-file', pair.key];

  it('an operator certificate lists the (empty) fleet', () => {
    const run = runCli(['fleet', 'devices', '--broker', url, ...tls(pki.ca.cert, pki.operator)]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('0 device(s), 0 online');
  });

  it('a device certificate the ACL silences is said, not listed as 0 devices', () => {
    const run = runCli(['fleet', 'devices', '--broker', url, ...tls(pki.ca.cert, pki.device)]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('the broker delivers nothing to this identity on fleetlet/v1/devices/+/presence: its ACL silences it');
    expect(run.stdout).not.toContain('0 device(s)');
  });

  it('--broker host:port without a scheme is a usage error that shows the expected form', () => {
    const run = runCli(['fleet', 'devices', '--broker', `127.0.0.1:${broker.port}`]);
    expect(run.code).toBe(64);
    expect(run.stderr).toContain(`--broker expects a URL with its scheme, mqtts://HOST:8883 (TLS) or mqtt://HOST:1883, got "127.0.0.1:${broker.port}"`);
  });

  it('a missing, a wrong and a mismatched TLS file are each named', () => {
    const missing = join(dir.dir, 'nope.crt');
    const gone = runCli(['fleet', 'devices', '--broker', url, ...tls(missing, pki.operator)]);
    expect(gone.code).toBe(64);
    expect(gone.stderr).toContain(`--ca-file ${missing}: cannot read a CA certificate there (ENOENT)`);
    const notPem = join(dir.dir, 'notes.txt');
    writeFileSync(notPem, 'not a certificate\n');
    const wrong = runCli(['fleet', 'devices', '--broker', url, '--ca-file', pki.ca.cert, '--cert-file', notPem, '--tls-key-file', pki.operator.key]);
    expect(wrong.code).toBe(64);
    expect(wrong.stderr).toContain(`--cert-file ${notPem} does not hold a certificate (PEM)`);
    const mismatched = runCli(['fleet', 'devices', '--broker', url, '--ca-file', pki.ca.cert, '--cert-file', pki.operator.cert, '--tls-key-file', pki.device.key]);
    expect(mismatched.code).toBe(64);
    expect(mismatched.stderr).toContain(`--tls-key-file ${pki.device.key} is not the key of the certificate in --cert-file ${pki.operator.cert}`);
  });

  it('a broker certificate from another CA names the --ca-file that does not vouch for it', () => {
    const run = runCli(['fleet', 'devices', '--broker', url, ...tls(pki.otherCa.cert, pki.operator)]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`the certificate of ${url} is not signed by the CA in --ca-file ${pki.otherCa.cert}`);
  });
});
