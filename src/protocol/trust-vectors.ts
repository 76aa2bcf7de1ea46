import type { TrustDocument } from './trust-document.js';

/**
 * Test vectors for a trust-document signer and a release signer in another language: docs/protocol.md prints them
 * with the signatures the real signer makes (with the RFC 8032 test key of signing-vectors.ts as the root and as
 * the release key), and a unit test checks that the device accepts exactly those.
 */
export const TRUST_VECTOR_DOCUMENT: TrustDocument = {
  schemaVersion: 1,
  version: 2,
  issuedAt: 1_772_352_000_000,
  root: { publicKey: '11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=' },
  operatorKeys: [
    {
      id: 'ops-2026',
      publicKey: 'PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=',
      scopes: { types: ['k3s.upgrade', 'ping'], targets: ['group:canary', 'device:pi-kitchen-01'] },
      expiresAt: 1_798_761_600_000,
    },
  ],
  releaseKeys: [{ id: 'release-2026', publicKey: '11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=' }],
  revoked: ['ops-2025'],
};

export const RELEASE_VECTOR = {
  version: '1.2.3-rc.1',
  sha256: '0f343b0931126a20f133d67c2b018a3b7e3ac8f46a7bff4fd3d3b6b1d5a1b1c9',
} as const;
