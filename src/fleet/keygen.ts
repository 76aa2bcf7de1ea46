import { generateKeyPairSync } from 'node:crypto';
import { publicKeyToBase64 } from '../protocol/ed25519-keys.js';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';

import { SigningKeyError } from './errors.js';
import { errorReason, isErrno } from '../lib/errors.js';

export interface GeneratedKey {
  keyId: string;
  privateKeyFile: string;
  publicKey: string;
}

/**
 * Makes an operator key pair. The private key goes to a new file created with mode 0600 (never over an existing
 * one: overwriting a key would lock its devices out); the public key is returned for the devices' config.
 */
export function generateSigningKey(privateKeyFile: string, keyId: string): GeneratedKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  let fd: number;
  try {
    fd = openSync(privateKeyFile, 'wx', 0o600);
  } catch (err) {
    throw new SigningKeyError(
      isErrno(err, 'EEXIST') ? `${privateKeyFile} already exists; refusing to overwrite a key` : `cannot create ${privateKeyFile}: ${errorReason(err)}`,
    );
  }
  try {
    writeSync(fd, pem);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { keyId, privateKeyFile, publicKey: publicKeyToBase64(publicKey) };
}

/** The config lines a device needs to trust this key. */
export function trustSnippet(key: GeneratedKey): string {
  return ['commands:', '  trustedKeys:', `    - id: ${key.keyId}`, `      publicKey: ${key.publicKey}`, ''].join('\n');
}
