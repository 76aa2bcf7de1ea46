import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TrustState } from '../../src/commands/trust-state.js';
import { createLogger } from '../../src/lib/logger.js';
import { SignedTrustDocumentSchema, trustSigningBytes } from '../../src/protocol/trust-document.js';
import { testVectorPublicKeyBase64 } from '../../src/protocol/signing-vectors.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';

/** The trust section of the committed document, read as a signer in another language would read it. */
const doc = readFileSync(join(REPO_ROOT, 'docs/protocol.md'), 'utf8');
const section = doc.slice(doc.indexOf('## Trust documents and release signatures'));

/** The fenced block that follows `label`. */
function block(label: string): string {
  const start = section.indexOf(label);
  const match = /```\w*\n([\s\S]*?)\n```/.exec(section.slice(start));
  if (start < 0 || !match) throw new Error(`no block after "${label}"`);
  return match[1]!;
}

describe('the trust and release test vectors of docs/protocol.md', () => {
  let dir: { dir: string; cleanup: () => void };
  beforeEach(() => (dir = tempDir('fleetlet-trust-vectors-')));
  afterEach(() => dir.cleanup());

  it('the signed document is accepted by a device whose bootstrap root is the test key, and its bytes are what the text says', async () => {
    const signed = SignedTrustDocumentSchema.parse(JSON.parse(block('The signed document, as')));
    expect(JSON.parse(block('The document:'))).toEqual(signed.document);
    expect(trustSigningBytes(signed.document).toString('utf8')).toBe(block('Signed bytes as UTF-8 text:'));
    expect(trustSigningBytes(signed.document).toString('hex')).toBe(block('Signed bytes in hex:').replaceAll('\n', ''));
    const device = new TrustState({ stateDir: dir.dir, bootstrapRoot: testVectorPublicKeyBase64(), fallbackKeys: new Map(), logger: createLogger({ level: 'silent' }) });
    expect(await device.apply(signed)).toMatchObject({ ok: true });

    const release = JSON.parse(block('for this release:')) as { version: string; sha256: string };
    const signature = JSON.parse(block('Release signature:')) as { keyId: string; sig: string };
    expect(device.checkRelease({ ...release, releaseSignature: signature })).toEqual({ ok: true });
    expect(device.checkRelease({ ...release, version: '1.2.3', releaseSignature: signature })).toMatchObject({ ok: false, reason: 'release_signature_invalid' });
  });

  it('a document changed after signing is refused', async () => {
    const signed = SignedTrustDocumentSchema.parse(JSON.parse(block('The signed document, as')));
    const device = new TrustState({ stateDir: dir.dir, bootstrapRoot: testVectorPublicKeyBase64(), fallbackKeys: new Map(), logger: createLogger({ level: 'silent' }) });
    const widened = { ...signed, document: { ...signed.document, revoked: [] } };
    expect(await device.apply(widened)).toMatchObject({ ok: false, reason: 'trust_bad_signature' });
  });
});
