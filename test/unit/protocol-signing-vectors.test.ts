import { verify } from 'node:crypto';
import { publicKeyFromBase64 } from '../../src/protocol/ed25519-keys.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { verifyCommand } from '../../src/commands/verify.js';
import {
  signCommand,
  signingBytes,
  UnsignedCommandSchema,
  type UnsignedCommand,
} from '../../src/protocol/command.js';
import { SIGNING_VECTORS, testVectorPrivateKey, testVectorPublicKeyBase64 } from '../../src/protocol/signing-vectors.js';
import { REPO_ROOT } from '../helpers/paths.js';

/** The signing section of the committed document, read as a signer in another language would read it. */
const doc = readFileSync(join(REPO_ROOT, 'docs/protocol.md'), 'utf8');
const section = doc.slice(doc.indexOf('## Signing commands'));

function field(label: string): string {
  const match = new RegExp(`^- ${label.replace(/[()]/g, '\\$&')}: \`([^\`]+)\``, 'm').exec(section);
  if (!match) throw new Error(`no "${label}" in docs/protocol.md`);
  return match[1]!;
}

/** The fenced block that follows `label` in one vector's text. */
function block(text: string, label: string): string {
  const start = text.indexOf(label);
  const match = /```\w*\n([\s\S]*?)\n```/.exec(text.slice(start));
  if (start < 0 || !match) throw new Error(`no block after "${label}"`);
  return match[1]!;
}

interface DocVector {
  title: string;
  command: UnsignedCommand;
  signedText: string;
  signedHex: string;
  sig: string;
  envelope: string;
}

const vectors: DocVector[] = section
  .split(/^### Vector \d+: /m)
  .slice(1)
  .map((text) => ({
    title: text.slice(0, text.indexOf('\n')),
    command: UnsignedCommandSchema.parse(JSON.parse(block(text, 'Command without `sig`'))),
    signedText: block(text, 'Signed bytes as UTF-8 text'),
    signedHex: block(text, 'Signed bytes in hex').replace(/\s/g, ''),
    sig: block(text, 'Signature (`sig`)'),
    envelope: block(text, 'Envelope as published'),
  }));

const seed = field('private key seed (hex)');
const publicBase64 = field('public key (base64, as in `commands.trustedKeys`)');
const keyId = field('key id');

describe('signing test vectors in docs/protocol.md', () => {
  it('lists every vector of the code, with the RFC 8032 TEST 1 key', () => {
    expect(vectors.map((v) => v.title)).toEqual(SIGNING_VECTORS.map((v) => v.title));
    expect(field('public key (hex)')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(testVectorPublicKeyBase64(seed)).toBe(publicBase64);
    expect(Buffer.from(publicBase64, 'base64').toString('hex')).toBe(field('public key (hex)'));
  });

  it('has signed bytes that the real signer produces, and signatures Ed25519 accepts over exactly those bytes', () => {
    const publicKey = publicKeyFromBase64(publicBase64);
    for (const vector of vectors) {
      const bytes = Buffer.from(vector.signedHex, 'hex');
      expect(bytes.toString('utf8'), vector.title).toBe(vector.signedText);
      expect(signingBytes(vector.command).equals(bytes), vector.title).toBe(true);
      expect(signCommand(vector.command, testVectorPrivateKey(seed)).sig, vector.title).toBe(vector.sig);
      expect(verify(null, bytes, publicKey, Buffer.from(vector.sig, 'base64')), vector.title).toBe(true);
    }
  });

  it('has envelopes that the real verifier accepts, also re-spaced and reordered, and refuses when altered', () => {
    for (const vector of vectors) {
      const { command } = vector;
      const context = {
        trustedKeys: new Map([[keyId, { key: publicKeyFromBase64(publicBase64), revoked: false }]]),
        deviceId: 'device' in command.target ? command.target.device : 'any-device',
        groups: 'group' in command.target ? [command.target.group] : [],
        nowMs: command.issuedAt,
        clockSkewMs: 0,
        maxLifetimeMs: 7 * 86_400_000,
        maxBytes: 64 * 1024,
        seenBefore: () => false,
      };
      expect(verifyCommand(Buffer.from(vector.envelope), context), vector.title).toMatchObject({ ok: true });
      const reordered = Object.fromEntries(Object.entries(JSON.parse(vector.envelope) as object).reverse());
      expect(verifyCommand(Buffer.from(JSON.stringify(reordered, null, 4)), context).ok, vector.title).toBe(true);
      const altered = vector.envelope.replace(`"expiresAt":${command.expiresAt}`, `"expiresAt":${command.expiresAt - 1}`);
      expect(verifyCommand(Buffer.from(altered), context), vector.title).toMatchObject({ ok: false, reason: 'bad_signature' });
    }
  });
});
