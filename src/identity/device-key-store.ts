import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../lib/files.js';
import { certificateRequestPem } from './csr.js';
import { EnrolmentFilesError } from './errors.js';

/**
 * What TLS needs to use the device's private key. A file store hands Node the PEM it keeps 0600; a key held in a TPM
 * or a secure element would instead name an OpenSSL engine key (Node's `privateKeyEngine` and
 * `privateKeyIdentifier`), and its private half would never be in this process at all.
 */
export type TlsKey = { key: Buffer } | { privateKeyEngine: string; privateKeyIdentifier: string };

/**
 * The device's key pairs (ECDSA P-256), one per slot (a certificate generation). The one interface enrolment uses:
 * it makes keys, signs certificate requests with them and shows their public halves; it never exports a private key
 * to anywhere but the TLS stack. Files today; a TPM or secure element can implement the same interface later.
 */
export interface DeviceKeyStore {
  /** Makes a new key pair in `slot`, replacing any there. The private key is made here and never leaves the device. */
  generate(slot: string): Promise<void>;
  /** Whether `slot` holds a usable key pair. */
  has(slot: string): Promise<boolean>;
  /** The public key in SPKI DER, to match a certificate against. */
  publicKey(slot: string): Promise<Buffer>;
  /** A PKCS#10 request with subject `CN=<commonName>`, signed by the slot's key (proof that the device holds it). */
  signCsr(slot: string, commonName: string): Promise<string>;
  /** The key for the TLS stack of the link. */
  tlsKey(slot: string): Promise<TlsKey>;
}

const KEY_FILE = 'device.key';
const MAX_KEY_BYTES = 16 * 1024;

/** Keys in files: `<slot>/device.key`, PKCS#8 PEM, mode 0600, written whole or not at all (lib/files.ts). */
export class FileKeyStore implements DeviceKeyStore {
  async generate(slot: string): Promise<void> {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    await mkdir(slot, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.#file(slot), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }

  async has(slot: string): Promise<boolean> {
    try {
      await this.#privateKey(slot);
      return true;
    } catch {
      return false;
    }
  }

  async publicKey(slot: string): Promise<Buffer> {
    return createPublicKey(await this.#privateKey(slot)).export({ type: 'spki', format: 'der' });
  }

  async signCsr(slot: string, commonName: string): Promise<string> {
    const privateKey = await this.#privateKey(slot);
    const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    return certificateRequestPem(commonName, spki, (data) => sign('sha256', data, privateKey));
  }

  async tlsKey(slot: string): Promise<TlsKey> {
    return { key: await this.#read(slot) };
  }

  #file(slot: string): string {
    return join(slot, KEY_FILE);
  }

  async #read(slot: string): Promise<Buffer> {
    const file = this.#file(slot);
    const { size } = await stat(file);
    if (size > MAX_KEY_BYTES) throw new EnrolmentFilesError(`${file} is larger than ${MAX_KEY_BYTES} bytes: not a device key`);
    return readFile(file);
  }

  async #privateKey(slot: string): Promise<KeyObject> {
    const key = createPrivateKey(await this.#read(slot));
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new EnrolmentFilesError(`${this.#file(slot)} is not an ECDSA P-256 key`);
    }
    return key;
  }
}
