import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkClientCertificate } from '../../src/cli/doctor/client-certificate.js';
import type { DoctorContext } from '../../src/cli/doctor/check.js';
import { createNetworkProbe } from '../../src/cli/doctor/network-probe.js';
import { ConfigSchema, type ConfigInput } from '../../src/config/schema.js';
import { createCa, issueCert } from '../helpers/certs.js';
import { tempDir } from '../helpers/paths.js';

/** The client-certificate check against real certificates made with openssl at test time. */
const { dir, cleanup } = tempDir('fleetlet-doctor-cert-');
afterAll(cleanup);
const ca = createCa(dir, 'fleet-ca');
const otherCa = createCa(dir, 'other-ca');
const good = issueCert(ca, dir, 'pi-01');
const otherName = issueCert(ca, dir, 'pi-02');
const foreign = issueCert(otherCa, dir, 'pi-01');
const expired = issueCert(ca, dir, 'pi-01', { expired: true });

function context(config: ConfigInput, extra: Partial<DoctorContext> = {}): DoctorContext {
  return { root: '/', image: false, config: ConfigSchema.parse(config), arch: 'x64', now: new Date(), probe: createNetworkProbe(1000), freeBytes: () => 0, ...extra };
}

const withCert = (tls: Record<string, string>, extra: Partial<DoctorContext> = {}) =>
  context({ device: { id: 'pi-01' }, broker: { url: 'mqtts://127.0.0.1:8883', tls: { caFile: ca.cert, ...tls } }, k3s: { enabled: false } }, extra);

describe('doctor: the client certificate', () => {
  it('passes a certificate of this device, from the fleet CA, with its key', async () => {
    const [result] = await checkClientCertificate(withCert({ certFile: good.cert, keyFile: good.key }));
    expect(result).toMatchObject({ check: 'client-certificate', status: 'pass' });
    expect(result!.summary).toContain('issued to pi-01 by the fleet CA, key matches');
  });

  it.each([
    ['another device', { certFile: otherName.cert, keyFile: otherName.key }, 'not to this device "pi-01"'],
    ['another CA', { certFile: foreign.cert, keyFile: foreign.key }, 'not signed by the fleet CA'],
    ['a key of another certificate', { certFile: good.cert, keyFile: otherName.key }, "not the device key's"],
    ['an expired certificate', { certFile: expired.cert, keyFile: expired.key }, 'it expired at'],
  ])('fails %s, saying why', async (_what, tls, reason) => {
    const results = await checkClientCertificate(withCert(tls));
    expect(results.every((r) => r.status === 'fail' && r.fix)).toBe(true);
    expect(results.map((r) => r.summary).join('\n')).toContain(reason);
  });

  it('warns past the point where it should have been renewed (2/3 of its lifetime)', async () => {
    const [result] = await checkClientCertificate(withCert({ certFile: good.cert, keyFile: good.key }, { now: new Date(Date.now() + 1.5 * 86_400_000) }));
    expect(result).toMatchObject({ status: 'warn' });
    expect(result!.summary).toContain('expires soon');
  });

  it('with enrolment: fails before the device enrolled, and checks the enrolled files once it has', async () => {
    const stateDir = join(dir, 'state');
    const config = {
      device: { id: 'pi-01' },
      broker: { url: 'mqtts://127.0.0.1:8883', tls: { caFile: ca.cert } },
      k3s: { enabled: false },
      stateDir,
      enrolment: { hubUrl: 'https://hub.example.net', bootstrapTokenFile: join(dir, 'token') },
    };
    const [before] = await checkClientCertificate(context(config));
    expect(before).toMatchObject({ status: 'fail' });
    expect(before!.summary).toContain('not enrolled yet');
    const generation = join(stateDir, 'enrolment', 'gen-0123456789abcdef');
    mkdirSync(generation, { recursive: true });
    copyFileSync(good.cert, join(generation, 'device.pem'));
    copyFileSync(good.key, join(generation, 'device.key'));
    symlinkSync('gen-0123456789abcdef', join(stateDir, 'enrolment', 'current'));
    const [after] = await checkClientCertificate(context(config));
    expect(after).toMatchObject({ status: 'pass' });
  });

  it('on an image: passes a bootstrap token, fails an enrolled certificate', async () => {
    const root = join(dir, 'image');
    mkdirSync(join(root, 'etc/fleetlet'), { recursive: true });
    const config = {
      broker: { url: 'mqtts://127.0.0.1:8883', tls: { caFile: '/etc/fleetlet/ca.pem' } },
      k3s: { enabled: false },
      stateDir: '/var/lib/fleetlet',
      enrolment: { hubUrl: 'https://hub.example.net', bootstrapTokenFile: '/etc/fleetlet/enrol-token' },
    };
    const [noToken] = await checkClientCertificate(context(config, { root, image: true }));
    expect(noToken).toMatchObject({ status: 'fail' });
    writeFileSync(join(root, 'etc/fleetlet/enrol-token'), 'token\n', { mode: 0o600 });
    const [ready] = await checkClientCertificate(context(config, { root, image: true }));
    expect(ready).toMatchObject({ status: 'pass', summary: 'devices flashed from this image enrol at first boot with https://hub.example.net' });
    const generation = join(root, 'var/lib/fleetlet/enrolment/gen-0123456789abcdef');
    mkdirSync(generation, { recursive: true });
    copyFileSync(good.cert, join(generation, 'device.pem'));
    symlinkSync('gen-0123456789abcdef', join(root, 'var/lib/fleetlet/enrolment/current'));
    const [cloned] = await checkClientCertificate(context(config, { root, image: true }));
    expect(cloned).toMatchObject({ status: 'fail' });
    expect(cloned!.summary).toContain('every device flashed from it would share it');
  });
});
