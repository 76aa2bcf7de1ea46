import { describe, expect, it } from 'vitest';
import { verifyCommand } from '../../src/commands/verify.js';
import { encode, signedCommand, testKey, trustOf } from '../fixtures/command-keys.js';

/** A small seeded generator, so that a failing case can be replayed from its seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NOW = Date.UTC(2026, 0, 1);
const operator = testKey('ops');
const context = {
  trustedKeys: trustOf({ key: operator }),
  deviceId: 'dev-1',
  groups: ['g1'],
  nowMs: NOW,
  clockSkewMs: 300_000,
  maxLifetimeMs: 86_400_000,
  maxBytes: 16 * 1024,
  seenBefore: () => false,
};

function randomValue(next: () => number, depth: number): unknown {
  const pick = Math.floor(next() * (depth > 3 ? 6 : 8));
  switch (pick) {
    case 0: return null;
    case 1: return next() < 0.5;
    case 2: return Math.floor((next() - 0.5) * 2 ** 53);
    case 3: return next() * 1e6;
    case 4: return randomString(next);
    case 5: return ['ping', 'k3s.upgrade', 'v1.36.3+k3s1', 'dev-1', '__proto__', 'constructor'][Math.floor(next() * 6)];
    case 6: return Array.from({ length: Math.floor(next() * 4) }, () => randomValue(next, depth + 1));
    default: {
      const keys = ['schemaVersion', 'id', 'type', 'target', 'issuedAt', 'expiresAt', 'args', 'keyId', 'sig', 'device', 'group', '__proto__', 'version', 'x'];
      return Object.fromEntries(Array.from({ length: Math.floor(next() * 6) }, () => [keys[Math.floor(next() * keys.length)]!, randomValue(next, depth + 1)]));
    }
  }
}

function randomString(next: () => number): string {
  return Array.from({ length: Math.floor(next() * 20) }, () => String.fromCharCode(Math.floor(next() * 0x2fff))).join('');
}

/** One field of a genuine command replaced by a random value: the signature must never survive it. */
function mutated(next: () => number): { payload: Buffer; changed: boolean } {
  const envelope = signedCommand(operator, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1' } }, NOW) as unknown as Record<string, unknown>;
  const keys = Object.keys(envelope);
  const key = keys[Math.floor(next() * keys.length)]!;
  const replacement = randomValue(next, 1);
  const changed = JSON.stringify(replacement) !== JSON.stringify(envelope[key]);
  return { payload: encode({ ...envelope, [key]: replacement }), changed };
}

describe('command verification under fuzzing', () => {
  it('survives 6,000 random and mutated payloads, and accepts none that was changed', () => {
    const next = prng(0xf1ee7);
    const reasons = new Map<string, number>();
    let accepted = 0;
    for (let i = 0; i < 6000; i++) {
      let payload: Buffer;
      let mayPass = false;
      const kind = i % 3;
      if (kind === 0) {
        payload = Buffer.from(Array.from({ length: Math.floor(next() * 512) }, () => Math.floor(next() * 256)));
      } else if (kind === 1) {
        payload = encode(randomValue(next, 0));
      } else {
        const m = mutated(next);
        payload = m.payload;
        mayPass = !m.changed;
      }
      const verdict = verifyCommand(payload, context);
      if (verdict.ok) {
        expect(mayPass, `payload ${i} passed: ${payload.toString('utf8').slice(0, 200)}`).toBe(true);
        accepted += 1;
      } else {
        reasons.set(verdict.reason, (reasons.get(verdict.reason) ?? 0) + 1);
      }
    }
    expect(reasons.get('malformed')).toBeGreaterThan(3000);
    expect(reasons.get('bad_signature') ?? 0).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(200);
  });

  it('survives deep nesting and huge numbers inside args', () => {
    const envelope = signedCommand(operator, {}, NOW);
    const prefix = JSON.stringify(envelope).replace('"args":{}', '"args":{"x":');
    for (const depth of [1000, 7000]) {
      const nested = `${prefix.slice(0, prefix.indexOf('"args":{"x":') + 12)}${'['.repeat(depth)}${']'.repeat(depth)}}${prefix.slice(prefix.indexOf('"args":{"x":') + 12)}`;
      const verdict = verifyCommand(Buffer.from(nested), context);
      expect(verdict).toMatchObject({ ok: false, reason: 'bad_args' });
    }
    const big = verifyCommand(encode({ ...envelope, issuedAt: 1e308 }), context);
    expect(big).toMatchObject({ ok: false, reason: 'malformed' });
  });
});

/** JSON text of `value` with one extra member written first into its `target`-th object (depth-first order). */
function serializeWithExtraMember(value: unknown, target: number, extra: (keys: string[]) => string): string {
  let seen = 0;
  const write = (node: unknown): string => {
    if (Array.isArray(node)) return `[${node.map(write).join(',')}]`;
    if (node === null || typeof node !== 'object') return JSON.stringify(node);
    const keys = Object.keys(node);
    const members = keys.map((key) => `${JSON.stringify(key)}:${write((node as Record<string, unknown>)[key])}`);
    if (seen++ === target) members.unshift(extra(keys));
    return `{${members.join(',')}}`;
  };
  return write(value);
}

const countObjects = (node: unknown): number =>
  Array.isArray(node) ? node.reduce<number>((sum, item) => sum + countObjects(item), 0)
    : node !== null && typeof node === 'object' ? 1 + Object.values(node).reduce<number>((sum, item) => sum + countObjects(item), 0)
      : 0;

/** The key spelt with some of its characters as \u escapes, which JSON.parse reads as the same key. */
function spelt(key: string, next: () => number): string {
  const chars = [...key].map((c) => (next() < 0.3 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c));
  return `"${chars.join('')}"`;
}

describe('duplicate and forbidden keys under fuzzing', () => {
  it('refuses 1,500 genuine commands with a duplicate or forbidden key added at a random depth, as malformed', () => {
    const next = prng(0xd0b1e);
    const specs = [
      { type: 'k3s.upgrade' as const, args: { version: 'v1.36.3+k3s1', artifactUrl: 'https://mirror.example/k3s', sha256: 'b'.repeat(64) } },
      { type: 'k3s.configure' as const, args: { labels: { zone: 'a', rack: 'b' }, taints: ['edge=true:NoSchedule'] } },
      { type: 'logs.collect' as const, args: { source: 'both', lines: 100 } },
      { type: 'ping' as const, args: {}, target: { group: 'g1' } },
    ];
    const details = new Set<string>();
    for (let i = 0; i < 1500; i++) {
      const envelope = signedCommand(operator, specs[i % specs.length]!, NOW);
      const target = Math.floor(next() * countObjects(envelope));
      const forbidden = next() < 0.4;
      const text = serializeWithExtraMember(envelope, target, (keys) => {
        const pool = forbidden || keys.length === 0 ? ['__proto__', 'constructor', 'prototype'] : keys;
        const key = pool[Math.floor(next() * pool.length)]!;
        return `${spelt(key, next)}:${JSON.stringify(randomValue(next, 2))}`;
      });
      const verdict = verifyCommand(Buffer.from(text), context);
      expect(verdict, `payload ${i}: ${text}`).toMatchObject({ ok: false, reason: 'malformed', commandId: null });
      if (!verdict.ok) details.add(verdict.detail.replace(/ at .*/, ''));
    }
    expect([...details].sort()).toEqual(
      expect.arrayContaining(['duplicate key "args"', 'duplicate key "version"', 'duplicate key "zone"', 'forbidden key "__proto__"', 'forbidden key "prototype"']),
    );
  });
});
