import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../lib/files.js';
import type { Logger } from '../lib/logger.js';
import {
  generateSealKeyPair,
  openSealedSecret,
  SealedSecretError,
  sealPublicKeyToBase64,
  type SealBinding,
  type SealedSecret,
} from '../protocol/sealed-secret.js';
import { errorReason, isErrno } from '../lib/errors.js';

/**
 * The device's own key for sealed command arguments. Callers see only this interface, so that a TPM or secure
 * element can hold the private key later without anything else changing.
 */
export interface DeviceSealKey {
  /** The raw X25519 public key in base64, as the inventory publishes it; undefined when there is no key. */
  readonly publicKey: string | undefined;
  /** The plaintext of a secret sealed to this key for `binding`; throws SealedSecretError otherwise. */
  open(sealed: SealedSecret, binding: SealBinding): string;
}

export const SEAL_KEY_FILE = 'seal-key.pem';
const MAX_KEY_FILE_BYTES = 4096;

/** A private key kept in the state directory (mode 0600), made on the device at the first start; it never leaves it. */
export class FileSealKey implements DeviceSealKey {
  readonly publicKey: string;

  private constructor(private readonly privateKey: KeyObject) {
    this.publicKey = sealPublicKeyToBase64(createPublicKey(privateKey));
  }

  /**
   * Loads the key, or makes one when there is none. A damaged file is replaced (reported through `replaced`): the
   * key only opens secrets, so a new one costs nothing but the sealed commands already on their way.
   */
  static async loadOrCreate(stateDir: string): Promise<{ key: FileSealKey; created: boolean; replaced?: string }> {
    const path = join(stateDir, SEAL_KEY_FILE);
    const existing = readKey(path);
    if (existing.key) return { key: new FileSealKey(existing.key), created: false };
    const { privateKey } = generateSealKeyPair();
    await writeFileAtomic(path, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    return { key: new FileSealKey(privateKey), created: true, ...(existing.problem ? { replaced: existing.problem } : {}) };
  }

  open(sealed: SealedSecret, binding: SealBinding): string {
    return openSealedSecret(sealed, this.privateKey, binding);
  }
}

function readKey(path: string): { key?: KeyObject; problem?: string } {
  let pem: string;
  try {
    if (statSync(path).size > MAX_KEY_FILE_BYTES) return { problem: 'too large to be a key' };
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    return isErrno(err, 'ENOENT') ? {} : { problem: `cannot read: ${errorReason(err)}` };
  }
  try {
    const key = createPrivateKey(pem);
    return key.asymmetricKeyType === 'x25519' ? { key } : { problem: 'not an X25519 key' };
  } catch {
    return { problem: 'not a private key' };
  }
}

/** Without a key (the state directory is full or read-only) sealed secrets cannot be opened; everything else works. */
class MissingSealKey implements DeviceSealKey {
  readonly publicKey = undefined;
  constructor(private readonly why: string) {}
  open(_sealed: SealedSecret, binding: SealBinding): string {
    throw new SealedSecretError(`this device has no seal key (${this.why}); the sealed ${binding.arg} cannot be opened`);
  }
}

/** The composition root's entry: the key, with its creation or loss logged once. */
export async function deviceSealKey(stateDir: string, logger: Logger): Promise<DeviceSealKey> {
  try {
    const { key, created, replaced } = await FileSealKey.loadOrCreate(stateDir);
    if (replaced) logger.warn({ problem: replaced, publicKey: key.publicKey }, 'the seal key was unreadable and has been replaced; secrets sealed to the old key cannot be opened');
    else if (created) logger.info({ publicKey: key.publicKey }, 'made the device seal key');
    return key;
  } catch (err) {
    const why = isErrno(err) ? err.code : 'cannot write it';
    logger.error({ error: why }, 'no device seal key: sealed command arguments will be refused');
    return new MissingSealKey(why);
  }
}
