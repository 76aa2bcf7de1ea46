import { createPublicKey, type KeyObject } from 'node:crypto';

/**
 * Ed25519 public keys travel as their raw 32 bytes in base64: in `commands.trustedKeys`, trust documents and
 * signatures. One conversion each way, for every key fleetlet names.
 */
export function publicKeyFromBase64(raw: string): KeyObject {
  const bytes = Buffer.from(raw, 'base64');
  if (bytes.length !== 32) throw new Error('an Ed25519 public key is 32 bytes');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: bytes.toString('base64url') }, format: 'jwk' });
}

/** The raw public key in base64 of an Ed25519 private or public key. */
export function publicKeyToBase64(key: KeyObject): string {
  const jwk = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || !jwk.x) throw new Error('not an Ed25519 key');
  return Buffer.from(jwk.x, 'base64url').toString('base64');
}
