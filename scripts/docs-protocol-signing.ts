// The "Signing commands" section of docs/protocol.md: enough to write a signer in another language, with test
// vectors computed by the real signer (test/unit/protocol-signing-vectors.test.ts checks them against the verifier).
import { createPublicKey } from 'node:crypto';
import { SIGNING_DOMAIN, signCommand, signingBytes } from '../src/protocol/command.js';
import { FORBIDDEN_KEYS } from '../src/protocol/strict-json.js';
import {
  SIGNING_VECTORS,
  TEST_VECTOR_KEY_ID,
  TEST_VECTOR_SEED_HEX,
  testVectorPrivateKey,
  testVectorPublicKeyBase64,
  type SigningVector,
} from '../src/protocol/signing-vectors.js';

const fence = (info: string, body: string): string[] => ['```' + info, body, '```', ''];
const wrapped = (text: string, width: number): string => text.match(new RegExp(`.{1,${width}}`, 'g'))!.join('\n');

function vector(spec: SigningVector, index: number): string[] {
  const key = testVectorPrivateKey();
  const bytes = signingBytes(spec.command);
  const envelope = signCommand(spec.command, key);
  return [
    `### Vector ${index + 1}: ${spec.title}`,
    '',
    'Command without `sig` (member order and whitespace here are free):',
    '',
    ...fence('json', JSON.stringify(spec.command, null, 2)),
    'Signed bytes as UTF-8 text (the domain line, then the canonical JSON on one line):',
    '',
    ...fence('text', bytes.toString('utf8')),
    'Signed bytes in hex:',
    '',
    ...fence('text', wrapped(bytes.toString('hex'), 64)),
    'Signature (`sig`):',
    '',
    ...fence('text', envelope.sig),
    'Envelope as published:',
    '',
    ...fence('json', JSON.stringify(envelope)),
  ];
}

export function signingSection(): string {
  const publicHex = createPublicKey(testVectorPrivateKey()).export({ format: 'der', type: 'spki' }).subarray(-32).toString('hex');
  const forbidden = [...FORBIDDEN_KEYS].map((key) => `\`${key}\``).join(', ');
  return [
    '## Signing commands',
    '',
    'A command envelope is signed with Ed25519 (RFC 8032; pure Ed25519: no prehash, no context) by the operator key',
    'named in `keyId`. `sig` is the 64-byte signature in base64 (RFC 4648 section 4, with padding: 88 characters).',
    'A device trusts a key by its raw 32-byte public key in base64 (`commands.trustedKeys`).',
    '',
    '### What is signed',
    '',
    `The signed bytes are the UTF-8 encoding of the domain line \`${SIGNING_DOMAIN.trim()}\` and a line feed (0x0A), followed`,
    'by the canonical JSON of an object holding exactly the envelope members other than `sig`: `schemaVersion`, `id`,',
    '`type`, `target`, `issuedAt`, `expiresAt`, `args`, `keyId`. The domain line keeps a command signature from being',
    'valid as the signature of anything else. Nothing else is prefixed or appended (no trailing newline).',
    '',
    'The canonical JSON is the JSON Canonicalization Scheme, RFC 8785:',
    '',
    '- no whitespace anywhere;',
    '- object members sorted by their names compared as sequences of UTF-16 code units (not UTF-8 bytes and not code',
    '  points: `"\\ud83d\\ude00"` (U+1F600) sorts before `"\\ufb33"`); names are unique;',
    '- strings in double quotes; `"` and `\\` written `\\"` and `\\\\`; U+0008, U+0009, U+000A, U+000C, U+000D written',
    '  `\\b`, `\\t`, `\\n`, `\\f`, `\\r`; the other characters below U+0020 written `\\u00xx` with lowercase hex; every other',
    '  character, including `/`, U+007F and all non-ASCII, written as itself in UTF-8 (never as an escape);',
    '- numbers as ECMAScript writes an IEEE 754 double (`Number.prototype.toString`: the shortest form that reads back',
    '  to the same double; `-0` as `0`; exponent form `1e+21`, `1e-7` from 1e21 up and below 1e-6). Every number in',
    '  a v1 command is an integer from 0 to 2^53 - 1, so in practice it is written as its plain decimal digits;',
    '- `true`, `false`, `null` as such; an optional member that is not given is left out, never written as `null`.',
    '',
    'The device verifies the signature over the canonical form of what it parsed, so the member order and whitespace',
    'of the published JSON are free. Before that, it refuses as `malformed` any payload another JSON parser could',
    'read differently: one that is not UTF-8 or starts with a byte order mark; an object with two members of the same',
    `name (compared after unescaping, at any depth); a member named ${forbidden} at any depth; a string with`,
    'a lone surrogate (`\\ud800` alone); a number beyond the range of a double. Its id is not echoed in the refusal.',
    '',
    '### Test vectors',
    '',
    'The key below is the one of RFC 8032 section 7.1, TEST 1: published, for testing a signer only; never trust it.',
    '',
    `- private key seed (hex): \`${TEST_VECTOR_SEED_HEX}\``,
    `- public key (hex): \`${publicHex}\``,
    `- public key (base64, as in \`commands.trustedKeys\`): \`${testVectorPublicKeyBase64()}\``,
    `- key id: \`${TEST_VECTOR_KEY_ID}\``,
    '',
    ...SIGNING_VECTORS.flatMap(vector),
  ].join('\n');
}
