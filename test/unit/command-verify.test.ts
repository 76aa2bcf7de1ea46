import { describe, expect, it } from 'vitest';
import { verifyCommand, type VerifyContext } from '../../src/commands/verify.js';
import { canonicalJson, signCommand } from '../../src/protocol/command.js';
import { encode, signedCommand, testKey, trustOf } from '../fixtures/command-keys.js';

const NOW = Date.UTC(2026, 0, 1);
const operator = testKey('ops-2026');
const retired = testKey('ops-2025');
const stranger = testKey('stranger');

function context(overrides: Partial<VerifyContext> = {}): VerifyContext {
  return {
    trustedKeys: trustOf({ key: operator }, { key: retired, revoked: true }),
    deviceId: 'dev-1',
    groups: ['canary', 'eu-west'],
    nowMs: NOW,
    clockSkewMs: 5 * 60_000,
    maxLifetimeMs: 7 * 86_400_000,
    maxBytes: 64 * 1024,
    seenBefore: () => false,
    ...overrides,
  };
}

const refusal = (payload: Uint8Array, ctx = context()) => {
  const verdict = verifyCommand(payload, ctx);
  if (verdict.ok) throw new Error('expected a refusal');
  return verdict;
};

describe('verifyCommand', () => {
  it('accepts a correctly signed command for this device and types its args', () => {
    const envelope = signedCommand(operator, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1' } }, NOW);
    const verdict = verifyCommand(encode(envelope), context());
    expect(verdict.ok).toBe(true);
    if (verdict.ok && verdict.command.type === 'k3s.upgrade') expect(verdict.command.args.version).toBe('v1.36.3+k3s1');
  });

  it('accepts a command for one of its groups', () => {
    const envelope = signedCommand(operator, { target: { group: 'eu-west' } }, NOW);
    expect(verifyCommand(encode(envelope), context()).ok).toBe(true);
  });

  it('refuses a command issued before the journal horizon plus the clock-skew allowance, and accepts one issued after', () => {
    const horizon = NOW - 3_600_000;
    const skew = 5 * 60_000;
    const ctx = context({ replayHorizonMs: horizon });
    const before = signedCommand(operator, { issuedAt: horizon + skew - 1, expiresAt: NOW + 60_000 }, NOW);
    expect(refusal(encode(before), ctx)).toMatchObject({ reason: 'replayed', detail: expect.stringContaining('oldest time the command journal') });
    const after = signedCommand(operator, { issuedAt: horizon + skew, expiresAt: NOW + 60_000 }, NOW);
    expect(verifyCommand(encode(after), ctx).ok).toBe(true);
  });

  it('refuses an oversized payload before parsing it', () => {
    const envelope = signedCommand(operator, {}, NOW);
    const padded = Buffer.concat([encode(envelope), Buffer.alloc(64 * 1024, 0x20)]);
    expect(refusal(padded)).toMatchObject({ reason: 'too_large', commandId: null });
  });

  it('refuses malformed payloads: not JSON, wrong shape, unknown type, extra fields', () => {
    expect(refusal(Buffer.from('{not json')).reason).toBe('malformed');
    expect(refusal(encode([1, 2, 3])).reason).toBe('malformed');
    expect(refusal(encode(null)).reason).toBe('malformed');
    const envelope = signedCommand(operator, {}, NOW);
    expect(refusal(encode({ ...envelope, type: 'shell.exec' }))).toMatchObject({ reason: 'malformed', type: null });
    expect(refusal(encode({ ...envelope, extra: 1 })).reason).toBe('malformed');
    const { sig: _sig, ...unsigned } = envelope;
    expect(refusal(encode(unsigned))).toMatchObject({ reason: 'malformed', commandId: envelope.id });
  });

  it('refuses args that do not fit the type schema', () => {
    const envelope = signedCommand(operator, { type: 'k3s.upgrade', args: { version: 'latest' } }, NOW);
    expect(refusal(encode(envelope))).toMatchObject({ reason: 'bad_args', commandId: envelope.id });
    const urlWithoutSum = signedCommand(operator, { type: 'k3s.upgrade', args: { version: 'v1.2.3+k3s1', artifactUrl: 'https://x/k3s' } }, NOW);
    expect(refusal(encode(urlWithoutSum)).reason).toBe('bad_args');
  });

  it('takes an agent version with a SemVer prerelease, and refuses empty prerelease identifiers', () => {
    const upgrade = (version: string) =>
      verifyCommand(encode(signedCommand(operator, { type: 'agent.upgrade', args: { version, artifactUrl: 'https://x/f', sha256: 'a'.repeat(64) } }, NOW)), context());
    expect(upgrade('1.2.3-rc.1').ok).toBe(true);
    expect(upgrade('1.2.3-x-y.2.z')).toMatchObject({ ok: true });
    for (const version of ['1.2.3-rc..1', '1.2.3-.rc', '1.2.3-rc.', '1.2.3-', `1.2.3-${'a'.repeat(33)}`]) {
      expect(upgrade(version), version).toMatchObject({ ok: false, reason: 'bad_args' });
    }
  });

  it('refuses an unknown key and a revoked key', () => {
    expect(refusal(encode(signedCommand(stranger, {}, NOW))).reason).toBe('unknown_key');
    expect(refusal(encode(signedCommand(retired, {}, NOW))).reason).toBe('revoked_key');
  });

  it('refuses a forged signature (right key id, other key) and a tampered command', () => {
    const forged = signCommand({ ...signedCommand(operator, {}, NOW), keyId: operator.id }, stranger.privateKey);
    expect(refusal(encode(forged)).reason).toBe('bad_signature');
    const genuine = signedCommand(operator, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1' } }, NOW);
    expect(refusal(encode({ ...genuine, args: { version: 'v1.36.4+k3s1' } })).reason).toBe('bad_signature');
    expect(refusal(encode({ ...genuine, expiresAt: genuine.expiresAt + 1 })).reason).toBe('bad_signature');
    expect(refusal(encode({ ...genuine, target: { group: 'canary' } })).reason).toBe('bad_signature');
  });

  it('refuses a command addressed to another device or a group it is not in', () => {
    expect(refusal(encode(signedCommand(operator, { target: { device: 'dev-2' } }, NOW))).reason).toBe('wrong_target');
    expect(refusal(encode(signedCommand(operator, { target: { group: 'us-east' } }, NOW))).reason).toBe('wrong_target');
  });

  it('refuses expired and future-dated commands, allowing the clock skew', () => {
    const skew = 5 * 60_000;
    const justExpired = signedCommand(operator, { issuedAt: NOW - 3_600_000, expiresAt: NOW - skew - 1 }, NOW);
    expect(refusal(encode(justExpired)).reason).toBe('expired');
    const withinSkew = signedCommand(operator, { issuedAt: NOW - 3_600_000, expiresAt: NOW - skew + 1000 }, NOW);
    expect(verifyCommand(encode(withinSkew), context()).ok).toBe(true);
    const future = signedCommand(operator, { issuedAt: NOW + skew + 1000 }, NOW);
    expect(refusal(encode(future))).toMatchObject({ reason: 'not_yet_valid', detail: expect.stringContaining('device clock 2026-01-01T00:00:00.000Z') });
    const slightlyAhead = signedCommand(operator, { issuedAt: NOW + skew - 1000 }, NOW);
    expect(verifyCommand(encode(slightlyAhead), context()).ok).toBe(true);
  });

  it('refuses a validity window that is inverted or longer than allowed (it would outlive the journal)', () => {
    const tooLong = signedCommand(operator, { issuedAt: NOW, expiresAt: NOW + 8 * 86_400_000 }, NOW);
    expect(refusal(encode(tooLong)).reason).toBe('lifetime_too_long');
    const inverted = signedCommand(operator, { issuedAt: NOW, expiresAt: NOW - 1 }, NOW);
    expect(refusal(encode(inverted)).reason).toBe('lifetime_too_long');
  });

  it('refuses a command id the journal has seen', () => {
    const envelope = signedCommand(operator, {}, NOW);
    const verdict = refusal(encode(envelope), context({ seenBefore: (id) => id === envelope.id }));
    expect(verdict).toMatchObject({ reason: 'replayed', commandId: envelope.id });
  });

  it('runs the checks in order: a forged command for another device is refused for its signature', () => {
    const forged = { ...signedCommand(operator, { target: { device: 'dev-2' } }, NOW), sig: signedCommand(operator, {}, NOW).sig };
    expect(refusal(encode(forged)).reason).toBe('bad_signature');
  });

  it('signs a canonical encoding: key order does not matter, content does', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 'x', c: null }] })).toBe('{"a":[{"c":null,"d":"x"}],"b":1}');
    const envelope = signedCommand(operator, { type: 'k3s.configure', args: { labels: { zone: 'a', rack: 'b' } } }, NOW);
    const reordered = Object.fromEntries(Object.entries({ ...envelope, args: { labels: { rack: 'b', zone: 'a' } } }).reverse());
    expect(verifyCommand(encode(reordered), context()).ok).toBe(true);
  });
});
