import { webcrypto } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CRYPTO } from '../../src/hub/enrolment/certificate-issuer.js';
import { checkCsr } from '../../src/hub/enrolment/csr-check.js';
import * as x509 from '../../src/lib/x509.js';
import { csrPem, newDeviceKey } from '../helpers/enrolment.js';

type Keys = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'];

async function csrWith(algorithm: Record<string, unknown>, name = 'CN=pi-1'): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(algorithm as unknown as webcrypto.EcKeyGenParams, true, ['sign', 'verify'])) as unknown as Keys;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name, keys, signingAlgorithm: algorithm as unknown as webcrypto.Algorithm }, CRYPTO);
  return csr.toString('pem');
}

/** The hub's checks of a device's certificate signing request, on CSRs made the way a device makes them. */
describe('enrolment CSR checks', () => {
  it('accepts a P-256 CSR for exactly CN=<device id> and names the key it binds', async () => {
    const key = await newDeviceKey();
    const checked = await checkCsr(await csrPem('pi-1', key), 'pi-1');
    if ('refused' in checked) throw new Error(checked.refused);
    expect(checked.publicKeySha256).toMatch(/^[0-9a-f]{64}$/);
    const again = await checkCsr(await csrPem('pi-1', key), 'pi-1');
    expect('refused' in again ? again.refused : again.publicKeySha256).toBe(checked.publicKeySha256);
  });

  it('refuses keys other than ECDSA P-256', async () => {
    const p384 = await checkCsr(await csrWith({ name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' }), 'pi-1');
    expect(p384).toEqual({ refused: expect.stringMatching(/must be ECDSA P-256, not ECDSA P-384/) });
    const rsa = await checkCsr(
      await csrWith({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }),
      'pi-1',
    );
    expect(rsa).toEqual({ refused: expect.stringMatching(/must be ECDSA P-256/) });
  });

  it('refuses a subject with more than the common name, and text that is no CSR', async () => {
    const extra = await checkCsr(await csrWith({ name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }, 'CN=pi-1, O=evil'), 'pi-1');
    expect(extra).toEqual({ refused: expect.stringMatching(/exactly CN=pi-1/) });
    expect(await checkCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----', 'pi-1')).toEqual({
      refused: expect.stringMatching(/not a PEM PKCS#10/),
    });
  });
});
