import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '../../lib/x509.js';

/**
 * The one place a device certificate is signed. The hub's own CA (LocalCaIssuer) implements it; an external CA
 * (step-ca, a cloud PKI) can too: take the CSR the hub has already checked (proof of possession, CN = device id,
 * P-256) and return the certificate it signed. The hub keeps serials and expiry from what `issue` returns, and
 * asks `revocationList` for the CRL the broker reads (an external CA returns its own CRL there).
 */
export interface CertificateIssuer {
  /** The CA certificate devices and the broker trust (PEM). */
  readonly caPem: string;
  issue(request: IssueRequest): Promise<IssuedCertificate>;
  revocationList(revoked: RevokedSerial[], now: Date, validDays: number): Promise<string>;
}

export interface IssueRequest {
  deviceId: string;
  csr: x509.Pkcs10CertificateRequest;
  lifetimeDays: number;
  now: Date;
}

export interface IssuedCertificate {
  certificatePem: string;
  /** Lowercase hex, as the CRL and `openssl x509 -serial` (in upper case) show it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface RevokedSerial {
  serial: string;
  revokedAt: Date;
}

/** WebCrypto as @peculiar/x509 types it (this project compiles without the DOM library). */
export type X509Crypto = NonNullable<Parameters<typeof x509.X509CrlGenerator.create>[1]>;
export type CaSigningKey = x509.X509CrlCreateParams['signingKey'];
export const CRYPTO = webcrypto as unknown as X509Crypto;

const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** A device clock a little behind the hub must not see its new certificate as not yet valid. */
const BACKDATE_MS = 5 * 60_000;

export class LocalCaIssuer implements CertificateIssuer {
  readonly caPem: string;

  constructor(
    private readonly caCert: x509.X509Certificate,
    private readonly caKey: CaSigningKey,
  ) {
    this.caPem = caCert.toString('pem');
  }

  async issue({ deviceId, csr, lifetimeDays, now }: IssueRequest): Promise<IssuedCertificate> {
    const lifetimeMs = lifetimeDays * 86_400_000;
    // Bounded by the lifetime: 5 minutes back on a 20-second certificate would put the device's renewal point
    // (a share of notBefore..notAfter) before its issue, and it would renew again at once, for ever.
    const notBefore = new Date(now.getTime() - Math.min(BACKDATE_MS, lifetimeMs / 10));
    const notAfter = new Date(now.getTime() + lifetimeMs);
    const serial = randomSerial();
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial,
        subject: new x509.Name([{ CN: [deviceId] }]).toString(),
        issuer: this.caCert.subject,
        notBefore,
        notAfter,
        publicKey: csr.publicKey,
        signingKey: this.caKey,
        signingAlgorithm: SIGNING,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          await x509.SubjectKeyIdentifierExtension.create(csr.publicKey, false, CRYPTO),
          await x509.AuthorityKeyIdentifierExtension.create(this.caCert, false, CRYPTO),
        ],
      },
      CRYPTO,
    );
    return { certificatePem: cert.toString('pem'), serial, notBefore, notAfter };
  }

  async revocationList(revoked: RevokedSerial[], now: Date, validDays: number): Promise<string> {
    const crl = await x509.X509CrlGenerator.create(
      {
        issuer: this.caCert.subject,
        thisUpdate: new Date(now.getTime() - BACKDATE_MS),
        nextUpdate: new Date(now.getTime() + validDays * 86_400_000),
        entries: revoked.map((r) => ({ serialNumber: r.serial, revocationDate: r.revokedAt })),
        signingKey: this.caKey,
        signingAlgorithm: SIGNING,
        extensions: [await x509.AuthorityKeyIdentifierExtension.create(this.caCert, false, CRYPTO)],
      },
      CRYPTO,
    );
    // OpenSSL (and so mosquitto's crlfile) reads only the label `X509 CRL`, not the library's `CRL`.
    return `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`;
  }
}

/** 16 random bytes with the top bit cleared: positive, unique without a counter, and not guessable (RFC 5280 allows 20). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}
