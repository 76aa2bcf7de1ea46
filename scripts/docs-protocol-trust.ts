// The "Trust documents and release signatures" section of docs/protocol.md: the rules a device applies and test
// vectors computed by the real signer (test/unit/protocol-trust-vectors.test.ts checks them against the device side).
import { SIGNING_DOMAIN } from '../src/protocol/command.js';
import {
  RELEASE_SIGNING_DOMAIN,
  ROOT_KEY_ID,
  TRUST_SIGNING_DOMAIN,
  releaseSigningBytes,
  signBytes,
  signTrustDocument,
  trustSigningBytes,
} from '../src/protocol/trust-document.js';
import { testVectorPrivateKey } from '../src/protocol/signing-vectors.js';
import { RELEASE_VECTOR, TRUST_VECTOR_DOCUMENT } from '../src/protocol/trust-vectors.js';

const fence = (info: string, body: string): string[] => ['```' + info, body, '```', ''];
const wrapped = (text: string, width: number): string => text.match(new RegExp(`.{1,${width}}`, 'g'))!.join('\n');

export function trustSection(): string {
  const key = testVectorPrivateKey();
  const signed = signTrustDocument(TRUST_VECTOR_DOCUMENT, [key]);
  const trustBytes = trustSigningBytes(TRUST_VECTOR_DOCUMENT);
  const releaseBytes = releaseSigningBytes(RELEASE_VECTOR);
  return [
    '## Trust documents and release signatures',
    '',
    'Authority is layered after The Update Framework. An offline fleet **root key** signs a versioned **trust',
    'document**: the operator keys, each with scopes (command types, targets, expiry), the release keys, and the ids',
    'of revoked keys. Operator keys sign commands; release keys sign fleetlet builds for `agent.upgrade`.',
    '',
    '```text',
    'root key (offline) --signs--> trust document v(n) --lists--> operator keys --sign--> commands',
    '                                                 \\--lists--> release keys  --sign--> fleetlet builds',
    '```',
    '',
    'A device starts from `commands.trustRoot` (the bootstrap root public key) and keeps the document it accepted in',
    '`<stateDir>/trust.json`. While it holds none, the keys of `commands.trustedKeys` sign anything, unscoped; once',
    'it holds one, only the document counts. `trust.update` (args: `{"document": <signed trust document>}`) delivers',
    'a new one; the device accepts it only when:',
    '',
    '- one of `signatures` is by the root key it holds (`trust_bad_signature` otherwise);',
    '- when `document.root.publicKey` names another root (a rotation), one is also by that new root',
    '  (`trust_root_not_cosigned`);',
    '- `document.version` is above the version it holds (`trust_rollback`); the same document again is reported',
    '  succeeded, as already in force;',
    '- `document.expiresAt`, when set, is still ahead (`trust_expired`). Once the device clock passes it (plus the',
    '  clock-skew allowance), every operator key of the document counts as expired (`key_expired`) until a newer',
    '  document arrives; the root is not affected, so it can always send one.',
    '',
    'Refusals are `failed` results with these reasons. The command that carries the document must itself be signed by',
    `a key the device trusts for \`trust.update\`: the root itself, known by the key id \`${ROOT_KEY_ID}\` and allowed to sign`,
    '`trust.update` only, or an operator key whose scopes include it.',
    '',
    'Every command is checked against the keys in force, in this order: `unknown_key` (not listed), `revoked_key`',
    '(its id is in `revoked`), `key_expired` (after the key\'s `expiresAt` plus the clock-skew allowance),',
    '`bad_signature`, `out_of_scope` (`scopes.types` holds neither the command type nor `*`, or `scopes.targets` holds',
    'neither `device:<id>` / `group:<name>` of its target nor `*`; a key scoped to a device cannot reach it through a',
    'group). The same check runs again just before an accepted command starts, and before a command interrupted by a',
    'restart is resumed: a command whose key lost its authority meanwhile ends `failed` with that reason, unless it is',
    'past the step where a `command.cancel` could stop it (a swapped binary on trial, a k3s swap): that one finishes,',
    'and its own checks decide (a fleetlet build on trial verifies its command again with the trust in force).',
    '',
    '### What the root signs',
    '',
    `The UTF-8 bytes of the domain line \`${TRUST_SIGNING_DOMAIN.trim()}\` and a line feed, followed by the canonical JSON`,
    '(RFC 8785, exactly as for commands above) of `document`. A signature entry is `{"publicKey": <raw 32-byte key in',
    'base64>, "sig": <64-byte Ed25519 signature in base64>}`.',
    '',
    'Vector: the RFC 8032 test key above as the root (never trust it). The document:',
    '',
    ...fence('json', JSON.stringify(TRUST_VECTOR_DOCUMENT, null, 2)),
    'Signed bytes as UTF-8 text:',
    '',
    ...fence('text', trustBytes.toString('utf8')),
    'Signed bytes in hex:',
    '',
    ...fence('text', wrapped(trustBytes.toString('hex'), 64)),
    'The signed document, as `trust.update` carries it in `args.document`:',
    '',
    ...fence('json', JSON.stringify(signed)),
    '### What a release key signs',
    '',
    `\`agent.upgrade\` carries \`releaseSignature: {"keyId", "sig"}\`: Ed25519 by a release key over the domain line`,
    `\`${RELEASE_SIGNING_DOMAIN.trim()}\`, a line feed and the canonical JSON of \`{"sha256", "version"}\` (the args' values).`,
    'When the trust document in force names release keys, a device refuses a build without it (`release_unsigned`)',
    'or with one that does not hold (`release_signature_invalid`) before it downloads anything. The three domain lines',
    `(\`${SIGNING_DOMAIN.trim()}\`, \`${TRUST_SIGNING_DOMAIN.trim()}\`, \`${RELEASE_SIGNING_DOMAIN.trim()}\`) keep a signature of one kind from being valid as another.`,
    '',
    'Vector: the RFC 8032 test key as the release key `release-2026`, for this release:',
    '',
    ...fence('json', JSON.stringify(RELEASE_VECTOR, null, 2)),
    'Signed bytes as UTF-8 text:',
    '',
    ...fence('text', releaseBytes.toString('utf8')),
    'Release signature:',
    '',
    ...fence('json', JSON.stringify({ keyId: 'release-2026', sig: signBytes(releaseBytes, key) })),
  ].join('\n');
}
