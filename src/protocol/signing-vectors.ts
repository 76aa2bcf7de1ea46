import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { publicKeyToBase64 } from './ed25519-keys.js';
import { type UnsignedCommand } from './command.js';

/**
 * Test vectors for writing a command signer in another language: docs/protocol.md prints them, and a unit test
 * checks that what the document says verifies with the real verifier and comes out of the real signer.
 *
 * The key is the one of RFC 8032 section 7.1, TEST 1: public, so a signer can be cross-checked against that RFC
 * too, and worthless as a credential. No device may ever trust it.
 */
export const TEST_VECTOR_SEED_HEX = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
export const TEST_VECTOR_KEY_ID = 'test-vector-rfc8032-1';

// An Ed25519 private key in PKCS #8 is this fixed DER header followed by the 32-byte seed (RFC 8410).
const PKCS8_ED25519_PREFIX = '302e020100300506032b657004220420';

export function testVectorPrivateKey(seedHex: string = TEST_VECTOR_SEED_HEX): KeyObject {
  return createPrivateKey({ key: Buffer.from(PKCS8_ED25519_PREFIX + seedHex, 'hex'), format: 'der', type: 'pkcs8' });
}

export function testVectorPublicKeyBase64(seedHex: string = TEST_VECTOR_SEED_HEX): string {
  return publicKeyToBase64(createPublicKey(testVectorPrivateKey(seedHex)));
}

export interface SigningVector {
  title: string;
  command: UnsignedCommand;
}

export const SIGNING_VECTORS: readonly SigningVector[] = [
  {
    title: 'a k3s upgrade for a group',
    command: {
      schemaVersion: 1,
      id: 'c-5f1e2d3c4b5a6978',
      type: 'k3s.upgrade',
      target: { group: 'canary' },
      issuedAt: 1_772_352_000_000,
      expiresAt: 1_772_438_400_000,
      args: { version: 'v1.36.3+k3s1' },
      keyId: TEST_VECTOR_KEY_ID,
    },
  },
  {
    title: 'a device command with nested keys to sort, a boolean and non-ASCII text',
    command: {
      schemaVersion: 1,
      id: 'c-vector-unicode-02',
      type: 'k3s.upgrade',
      target: { device: 'pi-kitchen-01' },
      issuedAt: 1_772_352_000_000,
      expiresAt: 1_772_355_600_000,
      args: {
        version: 'v1.35.2+k3s1',
        sha256: '0f343b0931126a20f133d67c2b018a3b7e3ac8f46a7bff4fd3d3b6b1d5a1b1c9',
        artifactUrl: 'https://mirror.example/k3s/Zürich-€/😀/k3s-arm64',
        allowDowngrade: true,
      },
      keyId: TEST_VECTOR_KEY_ID,
    },
  },
];
