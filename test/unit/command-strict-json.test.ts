import { describe, expect, it } from 'vitest';
import { verifyCommand, type VerifyContext } from '../../src/commands/verify.js';
import { encode, signedCommand, testKey, trustOf } from '../fixtures/command-keys.js';

const NOW = Date.UTC(2026, 0, 1);
const operator = testKey('ops-2026');
const SHA = 'a'.repeat(64);

const context: VerifyContext = {
  trustedKeys: trustOf({ key: operator }),
  deviceId: 'dev-1',
  groups: ['canary'],
  nowMs: NOW,
  clockSkewMs: 5 * 60_000,
  maxLifetimeMs: 7 * 86_400_000,
  maxBytes: 64 * 1024,
  seenBefore: () => false,
};

/** A genuine command's JSON text with `member` written first into the object that starts at `anchor`. */
function withMember(text: string, anchor: string, member: string): Buffer {
  const at = text.indexOf(anchor);
  if (at < 0) throw new Error(`${anchor} not in ${text}`);
  const open = at + anchor.length;
  const separator = text[open] === '}' ? '' : ',';
  return Buffer.from(`${text.slice(0, open)}${member}${separator}${text.slice(open)}`, 'utf8');
}

function refusal(payload: Uint8Array) {
  const verdict = verifyCommand(payload, context);
  if (verdict.ok) throw new Error('expected a refusal');
  return verdict;
}

describe('strict JSON before verification', () => {
  it('refuses a duplicate key that JSON.parse would resolve to the signed value, at the root and inside args', () => {
    const genuine = JSON.stringify(signedCommand(operator, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1' } }, NOW));
    expect(verifyCommand(Buffer.from(genuine), context).ok).toBe(true);
    // JSON.parse keeps the last of two equal keys, so both payloads parse to the signed command; another parser
    // (a broker plugin, an audit log) could read the first one.
    const root = refusal(withMember(genuine, '{', '"type":"k3s.restart"'));
    expect(root).toMatchObject({ reason: 'malformed', commandId: null, type: null, detail: 'duplicate key "type" at (root)' });
    const inArgs = refusal(withMember(genuine, '"args":{', '"version":"v1.99.0+k3s1"'));
    expect(inArgs).toMatchObject({ reason: 'malformed', detail: 'duplicate key "version" at args' });
  });

  it('sees a duplicate key spelt with escapes', () => {
    const genuine = JSON.stringify(signedCommand(operator, {}, NOW));
    const escaped = refusal(withMember(genuine, '{', '"\\u0074arget":{"device":"dev-2"}'));
    expect(escaped).toMatchObject({ reason: 'malformed', detail: 'duplicate key "target" at (root)' });
  });

  it('refuses __proto__, constructor and prototype keys at any depth', () => {
    const genuine = JSON.stringify(signedCommand(operator, { target: { group: 'canary' } }, NOW));
    for (const key of ['__proto__', 'constructor', 'prototype']) {
      expect(refusal(withMember(genuine, '{', `"${key}":{}`))).toMatchObject({ reason: 'malformed', detail: `forbidden key "${key}" at (root)` });
      expect(refusal(withMember(genuine, '"args":{', `"${key}":{"polluted":true}`)).detail).toBe(`forbidden key "${key}" at args`);
      expect(refusal(withMember(genuine, '"target":{', `"${key}":1`)).detail).toBe(`forbidden key "${key}" at target`);
    }
  });

  it('refuses invalid UTF-8 that would otherwise be read as U+FFFD under a valid signature', () => {
    const url = 'https://mirror.example/k3s-\uFFFD';
    const genuine = Buffer.from(JSON.stringify(signedCommand(operator, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1', artifactUrl: url, sha256: SHA } }, NOW)));
    expect(verifyCommand(genuine, context).ok).toBe(true);
    const replacement = Buffer.from('\uFFFD', 'utf8');
    const at = genuine.indexOf(replacement);
    const invalid = Buffer.concat([genuine.subarray(0, at), Buffer.from([0xff]), genuine.subarray(at + replacement.length)]);
    expect(refusal(invalid)).toMatchObject({ reason: 'malformed', detail: 'not UTF-8' });
  });

  it('refuses a byte order mark, lone surrogates and numbers beyond a double', () => {
    const genuine = JSON.stringify(signedCommand(operator, { type: 'logs.collect', args: { lines: 10 } }, NOW));
    expect(refusal(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(genuine)])).reason).toBe('malformed');
    const surrogate = refusal(Buffer.from(genuine.replace('"lines":10', '"source":"\\ud800"')));
    expect(surrogate).toMatchObject({ reason: 'malformed', detail: 'lone surrogate in a string at args.source' });
    const huge = refusal(Buffer.from(genuine.replace('"lines":10', '"lines":1e400')));
    expect(huge).toMatchObject({ reason: 'malformed', detail: 'number out of range at args.lines' });
  });

  it('still accepts equal keys in different objects, whitespace and escapes of ordinary characters', () => {
    const envelope = signedCommand(operator, { type: 'k3s.configure', args: { labels: { id: 'a' }, taints: ['id=x:NoSchedule'] } }, NOW);
    const spaced = JSON.stringify(envelope, null, 2).replace('"k3s.configure"', '"k3s\\u002econfigure"');
    expect(verifyCommand(Buffer.from(spaced), context).ok).toBe(true);
    expect(verifyCommand(encode(envelope), context).ok).toBe(true);
  });
});

describe('strict JSON refusals name the place without repeating what the sender wrote at length', () => {
  it('quotes, escapes and shortens keys and paths in the detail', () => {
    const genuine = JSON.stringify(signedCommand(operator, { type: 'k3s.configure', args: { labels: { zone: 'a' } } }, NOW));
    const longKey = `x${'\u001b[31m'.repeat(500)}`;
    const payload = withMember(genuine, '"labels":{', `${JSON.stringify(longKey)}:{"a":[{"__proto__":1}]}`);
    const { detail } = refusal(payload);
    expect(detail).toBe(`forbidden key "__proto__" at args.labels[${JSON.stringify(longKey.slice(0, 40) + '…')}].a[0]`);
    expect(detail).not.toContain('\u001b');
    const deep = genuine.replace('"zone":"a"', `"zone":${'['.repeat(300)}{"x":1,"x":2}${']'.repeat(300)}`);
    const deepDetail = refusal(Buffer.from(deep)).detail;
    expect(deepDetail).toMatch(/^duplicate key "x" at …(\[0\]){40}$/);
  });
});
