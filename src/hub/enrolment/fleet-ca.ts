import { createPrivateKey, webcrypto } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '../../lib/x509.js';
import { writeFileAtomic, entryExists } from '../../lib/files.js';
import { CRYPTO, LocalCaIssuer, type CaSigningKey } from './certificate-issuer.js';
import { FleetCaError } from './errors.js';

/**
 * The fleet CA's two files: `ca.crt` (public, the broker's cafile and the device's trust anchor) and `ca.key`
 * (PKCS#8, mode 0600, read by the hub only). `fleetlet hub ca init` makes a new P-256 CA or imports one.
 */
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { ...EC, hash: 'SHA-256' } as const;
const MAX_PEM_BYTES = 64 * 1024;

export interface FleetCaFiles {
  certFile: string;
  keyFile: string;
}

export function fleetCaFiles(dir: string): FleetCaFiles {
  return { certFile: join(dir, 'ca.crt'), keyFile: join(dir, 'ca.key') };
}

export async function createFleetCa(dir: string, options: { commonName: string; days: number; now: Date }): Promise<FleetCaFiles> {
  const files = refuseExisting(dir);
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'];
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex'),
      name: new x509.Name([{ CN: [options.commonName] }]).toString(),
      notBefore: new Date(options.now.getTime() - 5 * 60_000),
      notAfter: new Date(options.now.getTime() + options.days * 86_400_000),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, CRYPTO),
      ],
    },
    CRYPTO,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey));
  await writeCa(files, cert.toString('pem'), pemOf('PRIVATE KEY', pkcs8));
  return files;
}

/** Takes an existing CA (its certificate and P-256 key, PKCS#8 or SEC1 PEM) after checking that they belong together. */
export async function importFleetCa(dir: string, source: FleetCaFiles): Promise<FleetCaFiles> {
  const files = refuseExisting(dir);
  const issuer = await loadFleetCa(source);
  const pkcs8 = createPrivateKey(readBounded(source.keyFile)).export({ type: 'pkcs8', format: 'pem' }).toString();
  await writeCa(files, issuer.caPem, pkcs8);
  return files;
}

/** The CA of hub.enrolment, checked: a CA certificate, a P-256 key, and the key is the certificate's. */
export async function loadFleetCa(files: FleetCaFiles): Promise<LocalCaIssuer> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(readBounded(files.certFile));
  } catch (err) {
    throw err instanceof FleetCaError ? err : new FleetCaError(`${files.certFile} is not a PEM certificate`, { cause: err });
  }
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  if (!basic?.ca) throw new FleetCaError(`${files.certFile} is not a CA certificate (basicConstraints CA:TRUE missing)`);
  let key: CaSigningKey;
  try {
    const der = createPrivateKey(readBounded(files.keyFile)).export({ type: 'pkcs8', format: 'der' });
    key = (await webcrypto.subtle.importKey('pkcs8', der, EC, false, ['sign'])) as unknown as CaSigningKey;
  } catch (err) {
    throw err instanceof FleetCaError ? err : new FleetCaError(`${files.keyFile} is not a PEM ECDSA P-256 private key`, { cause: err });
  }
  const probe = Buffer.from('fleetlet fleet CA key check');
  const signature = await webcrypto.subtle.sign(SIGNING, key as unknown as webcrypto.CryptoKey, probe);
  const publicKey = (await cert.publicKey.export(EC, ['verify'], CRYPTO)) as unknown as webcrypto.CryptoKey;
  if (!(await webcrypto.subtle.verify(SIGNING, publicKey, signature, probe))) {
    throw new FleetCaError(`${files.keyFile} is not the private key of ${files.certFile}`);
  }
  return new LocalCaIssuer(cert, key);
}

function refuseExisting(dir: string): FleetCaFiles {
  const files = fleetCaFiles(dir);
  for (const file of [files.certFile, files.keyFile]) {
    if (entryExists(file)) throw new FleetCaError(`${file} exists already; a fleet CA is made once (remove it first to start over, which strands every device)`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return files;
}

async function writeCa(files: FleetCaFiles, certPem: string, keyPem: string): Promise<void> {
  // The key first: a certificate without its key is useless, a key without its certificate is simply made again.
  await writeFileAtomic(files.keyFile, keyPem, { mode: 0o600 });
  await writeFileAtomic(files.certFile, certPem, { mode: 0o644 });
}

function readBounded(file: string): string {
  try {
    if (statSync(file).size > MAX_PEM_BYTES) throw new FleetCaError(`${file} is larger than ${MAX_PEM_BYTES} bytes`);
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof FleetCaError) throw err;
    throw new FleetCaError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
}

function pemOf(label: string, der: Buffer): string {
  const body = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}
