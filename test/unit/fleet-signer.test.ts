import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { verifyCommand } from '../../src/commands/verify.js';
import { UsageError } from '../../src/lib/errors.js';
import { buildSignedCommand } from '../../src/fleet/signer.js';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = { keyId: 'ops', key: privateKey };
const NOW = Date.UTC(2026, 0, 1);

describe('buildSignedCommand', () => {
  it('signs what a device accepts', () => {
    const envelope = buildSignedCommand({ type: 'k3s.configure', target: { device: 'dev-1' }, args: { labels: { zone: 'a' } }, ttlSeconds: 60, now: NOW }, signer);
    const verdict = verifyCommand(Buffer.from(JSON.stringify(envelope)), {
      trustedKeys: new Map([['ops', { key: publicKey, revoked: false }]]),
      deviceId: 'dev-1',
      groups: [],
      nowMs: NOW,
      clockSkewMs: 0,
      maxLifetimeMs: 86_400_000,
      maxBytes: 64 * 1024,
      seenBefore: () => false,
    });
    expect(verdict.ok).toBe(true);
  });

  it('refuses to sign args that devices would refuse as malformed: a forbidden key, a lone surrogate', () => {
    const request = { type: 'k3s.configure' as const, target: { group: 'canary' }, ttlSeconds: 60, now: NOW };
    expect(() => buildSignedCommand({ ...request, args: { labels: { constructor: 'x' } } }, signer)).toThrow(
      new UsageError('devices would refuse this k3s.configure: forbidden key "constructor" at args.labels'),
    );
    const upgrade = { type: 'k3s.upgrade' as const, version: 'v1.36.3+k3s1', artifactUrl: 'https://mirror.example/k3s-\ud800', sha256: 'a'.repeat(64) };
    const { type, ...args } = upgrade;
    expect(() => buildSignedCommand({ ...request, type, args }, signer)).toThrow(/lone surrogate in a string at args.artifactUrl/);
  });
});
