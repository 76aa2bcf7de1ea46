import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { CertificateRejectedError } from './errors.js';

/**
 * The checks a device certificate must pass before the link uses it, and that `fleetlet doctor` shows one by one:
 * it chains to the fleet's CA, carries this device's public key, names this device, and is valid now. A certificate
 * the broker would refuse is caught here, where the reason can be said.
 */
export interface CertificateFacts {
  commonName: string | undefined;
  notBefore: Date;
  notAfter: Date;
  /** sha256 of the DER, as the inventory shows fingerprints. */
  fingerprint: string;
}

export type CertificateProblemKind = 'chain' | 'key' | 'name' | 'expired' | 'not-yet-valid';

export interface CertificateProblem {
  kind: CertificateProblemKind;
  message: string;
}

export interface CertificateExpectations {
  /** PEM text of the trusted CAs (a bundle may hold several). */
  caPem: string;
  /** Intermediates that may sit between the certificate and a CA (the hub's `caPem`). */
  intermediatesPem?: string;
  /** SPKI DER of the device's own key. */
  publicKey: Buffer;
  deviceId: string;
  now: Date;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const MAX_CHAIN_DEPTH = 4;

/** Every certificate of a PEM bundle; text between them is ignored, as OpenSSL does. */
export function parseCertificates(pem: string): X509Certificate[] {
  return (pem.match(PEM_CERTIFICATE) ?? []).map((block) => new X509Certificate(block));
}

export function certificateFacts(cert: X509Certificate): CertificateFacts {
  return {
    commonName: /^CN=(.*)$/m.exec(cert.subject)?.[1],
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    fingerprint: `sha256:${createHash('sha256').update(cert.raw).digest('hex')}`,
  };
}

/** The first certificate of `certPem` against what this device expects; an empty list means it passes. */
export function inspectCertificate(certPem: string, expect: CertificateExpectations): { facts: CertificateFacts; problems: CertificateProblem[] } {
  const [cert] = parseCertificates(certPem);
  if (!cert) throw new CertificateRejectedError('not a PEM certificate');
  const facts = certificateFacts(cert);
  const problems: CertificateProblem[] = [];
  if (!chainsTo(cert, parseCertificates(expect.caPem), parseCertificates(expect.intermediatesPem ?? ''))) {
    problems.push({ kind: 'chain', message: 'it is not signed by the fleet CA (enrolment.caFile / broker.tls.caFile)' });
  }
  if (!cert.publicKey.export({ type: 'spki', format: 'der' }).equals(expect.publicKey)) {
    problems.push({ kind: 'key', message: "its public key is not the device key's" });
  }
  if (facts.commonName !== expect.deviceId) {
    problems.push({ kind: 'name', message: `it is issued to "${facts.commonName ?? '(no common name)'}", not to this device "${expect.deviceId}"` });
  }
  if (facts.notAfter.getTime() <= expect.now.getTime()) {
    problems.push({ kind: 'expired', message: `it expired at ${facts.notAfter.toISOString()}` });
  } else if (facts.notBefore.getTime() > expect.now.getTime()) {
    problems.push({ kind: 'not-yet-valid', message: `it is valid only from ${facts.notBefore.toISOString()} (check the clock)` });
  }
  return { facts, problems };
}

/** Throws CertificateRejectedError naming every problem; the facts of a certificate that passes. */
export function verifyDeviceCertificate(certPem: string, expect: CertificateExpectations): CertificateFacts {
  const { facts, problems } = inspectCertificate(certPem, expect);
  if (problems.length > 0) throw new CertificateRejectedError(`certificate refused: ${problems.map((p) => p.message).join('; ')}`);
  return facts;
}

function chainsTo(cert: X509Certificate, anchors: X509Certificate[], intermediates: X509Certificate[]): boolean {
  let current = cert;
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth += 1) {
    if (anchors.some((anchor) => signedBy(current, anchor))) return true;
    const next = intermediates.find((candidate) => candidate !== current && signedBy(current, candidate) && candidate.ca);
    if (!next) return false;
    current = next;
  }
  return false;
}

function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

/** The expiry of the certificate in `file`, or undefined when it cannot be read as one (the link reports why). */
export function certificateNotAfterOfFile(file: string): Date | undefined {
  try {
    if (statSync(file).size > 256 * 1024) return undefined;
    const [cert] = parseCertificates(readFileSync(file, 'utf8'));
    return cert ? new Date(cert.validTo) : undefined;
  } catch {
    return undefined;
  }
}
