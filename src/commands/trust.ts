import type { TrustedKey } from './verify.js';
import { publicKeyFromBase64 } from '../protocol/ed25519-keys.js';

export interface TrustedKeyConfig {
  id: string;
  publicKey: string;
  revoked: boolean;
}

/** The configured operator keys by id. Revoked keys stay in the map so that a refusal can name the revocation. */
export function trustedKeyMap(keys: readonly TrustedKeyConfig[]): Map<string, TrustedKey> {
  return new Map(keys.map((entry) => [entry.id, { key: publicKeyFromBase64(entry.publicKey), revoked: entry.revoked }]));
}
