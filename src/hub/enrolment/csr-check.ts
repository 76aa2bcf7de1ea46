import { createHash } from 'node:crypto';
import * as x509 from '../../lib/x509.js';
import { CRYPTO } from './certificate-issuer.js';

/** A certificate signing request the hub accepted: signed by its key, for exactly `CN=<deviceId>`, P-256. */
export interface CheckedCsr {
  csr: x509.Pkcs10CertificateRequest;
  /** sha256 (hex) of the SubjectPublicKeyInfo: the key a device id is bound to. */
  publicKeySha256: string;
}

const COMMON_NAME_OID = '2.5.4.3';

/** The checked CSR with the key it binds, or why it is refused, in words a device log can show. */
export async function checkCsr(csrPem: string, deviceId: string): Promise<CheckedCsr | { refused: string }> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch {
    return { refused: 'the CSR is not a PEM PKCS#10 certificate request' };
  }
  const algorithm = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') {
    return { refused: `the CSR's key must be ECDSA P-256, not ${algorithm.name ?? 'unknown'} ${algorithm.namedCurve ?? ''}`.trim() };
  }
  // The signature by the key in the CSR is the device's proof that it holds that key.
  let signed = false;
  try {
    signed = await csr.verify(CRYPTO);
  } catch {
    signed = false;
  }
  if (!signed) return { refused: 'the CSR is not signed by its own key' };
  const rdns = csr.subjectName.toJSON();
  const only = rdns.length === 1 ? Object.entries(rdns[0]!) : [];
  const commonName = only.length === 1 && ['CN', COMMON_NAME_OID].includes(only[0]![0]) && only[0]![1].length === 1 ? only[0]![1][0] : undefined;
  if (commonName !== deviceId) {
    return { refused: `the CSR's subject must be exactly CN=${deviceId}, not "${csr.subject.slice(0, 200)}"` };
  }
  const publicKeySha256 = createHash('sha256').update(Buffer.from(csr.publicKey.rawData)).digest('hex');
  return { csr, publicKeySha256 };
}
