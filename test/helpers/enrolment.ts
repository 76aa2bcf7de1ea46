import { webcrypto } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import * as x509 from '../../src/lib/x509.js';
import { CRYPTO } from '../../src/hub/enrolment/certificate-issuer.js';

/** A device's side of enrolment for hub tests: its own P-256 key, a CSR made with @peculiar/x509, HTTPS calls. */
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
type Keys = Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[0]['keys'];

export interface DeviceKey {
  keys: Keys;
  /** PKCS#8 PEM, for an MQTT client's `key`. */
  privateKeyPem: string;
}

export async function newDeviceKey(): Promise<DeviceKey> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as unknown as Keys;
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey));
  return { keys, privateKeyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

/** A CSR for `commonName` signed by `key`; `signedBy` another key makes one whose signature does not match its key. */
export async function csrPem(commonName: string, key: DeviceKey, signedBy?: DeviceKey): Promise<string> {
  const keys = signedBy ? { publicKey: key.keys.publicKey, privateKey: signedBy.keys.privateKey } : key.keys;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: new x509.Name([{ CN: [commonName] }]).toString(), keys, signingAlgorithm: EC }, CRYPTO);
  return csr.toString('pem');
}

export interface HttpsAnswer {
  status: number;
  body: Record<string, unknown>;
}

/** A request to the hub over HTTPS, trusting `ca` (the hub's TLS certificate is not from a public CA). */
export function hubRequest(url: string, ca: string, method: 'GET' | 'POST', path: string, bearer?: string, body?: unknown): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${url}${path}`,
      {
        method,
        ca,
        headers: {
          ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
