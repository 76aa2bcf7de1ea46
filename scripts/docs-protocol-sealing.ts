// The "Sealed secret arguments" section of docs/protocol.md: enough to seal a secret in another language, with a test
// vector computed by the real sealer (test/unit/sealed-secret.test.ts opens it with the device side).
import { createPublicKey, diffieHellman } from 'node:crypto';
import { z } from 'zod';
import { SECRET_ARGS } from '../src/protocol/command.js';
import {
  SEAL_ALGORITHM,
  SEALING_VECTOR as V,
  SealedSecretSchema,
  sealPrivateKeyFromHex,
  sealPublicKeyToBase64,
  sealSecret,
} from '../src/protocol/sealed-secret.js';
import { canonicalJson } from '../src/protocol/canonical-json.js';

const fence = (info: string, body: string): string[] => ['```' + info, body, '```', ''];

export function sealingSection(): string {
  const recipient = sealPrivateKeyFromHex(V.recipientPrivateHex);
  const ephemeral = sealPrivateKeyFromHex(V.ephemeralPrivateHex);
  const recipientPublic = sealPublicKeyToBase64(createPublicKey(recipient));
  const sealed = sealSecret(V.plaintext, createPublicKey(recipient), V.binding, { ephemeralPrivateKey: ephemeral, nonce: Buffer.from(V.nonceHex, 'hex') });
  const shared = diffieHellman({ privateKey: ephemeral, publicKey: createPublicKey(recipient) }).toString('hex');
  const { arg, commandId, deviceId, type } = V.binding;
  const secretArgs = Object.entries(SECRET_ARGS)
    .map(([commandType, names]) => `\`${commandType}\`: ${(names ?? []).map((name) => `\`${name}\``).join(', ')}`)
    .join('; ');
  return [
    '## Sealed secret arguments',
    '',
    `Secret arguments (${secretArgs}) never travel in clear: each is sealed to the target device's own X25519 key,`,
    'which the device makes at its first start (the private key stays in its state directory, mode 0600) and publishes',
    'as `sealKey` in its inventory (the raw 32-byte public key, base64). A device refuses a secret argument given in',
    'clear (`bad_args`) and any command carrying one that targets a group (`bad_args`): a sealed value opens on one',
    'device only. `fleetlet fleet send --device ID --secret-file NAME=FILE` reads the key from the retained inventory,',
    'seals and signs. The sealed value is part of the signed `args`, so it is signed like any other argument.',
    '',
    `A sealed value is a JSON object (\`alg\` is \`${SEAL_ALGORITHM}\`):`,
    '',
    ...fence('json', JSON.stringify(z.toJSONSchema(SealedSecretSchema, { io: 'input' }), null, 2)),
    'To seal the UTF-8 bytes of a secret to a device public key `R` (32 bytes):',
    '',
    '1. Make a fresh X25519 key pair `(e, E)` (RFC 7748); never reuse it. `epk` is `E` in base64.',
    '2. `shared = X25519(e, R)`.',
    '3. `key = HKDF-SHA256(ikm = shared, salt = E || R, info = "fleetlet-sealed-secret-v1", length = 32)` (RFC 5869).',
    '4. A fresh random 12-byte `nonce`.',
    '5. The associated data is the UTF-8 encoding of the line `fleetlet-sealed-secret-v1` and a line feed (0x0A),',
    '   followed by the RFC 8785 canonical JSON of `{"arg", "commandId", "deviceId", "type"}`: the argument name, the',
    '   command id, the target device id and the command type. A sealed value moved to another argument, command or',
    '   device does not open.',
    '6. AES-256-GCM (NIST SP 800-38D) with `key`, `nonce` and the associated data; `ct` is the ciphertext followed by',
    '   the 16-byte tag, in base64.',
    '',
    'The device opens it with its private key in the same way, and refuses the command (`failed`, reason',
    '`sealed_secret`, nothing changed) when the tag does not verify.',
    '',
    '### Vector: a join token for `k3s.configure`',
    '',
    `Device private key (hex, RFC 7748 section 6.1's Bob): \`${V.recipientPrivateHex}\`; its \`sealKey\`: \`${recipientPublic}\`.`,
    `Ephemeral private key (hex, RFC 7748's Alice): \`${V.ephemeralPrivateHex}\`; nonce (hex): \`${V.nonceHex}\`.`,
    `Shared secret (hex): \`${shared}\`.`,
    '',
    'Plaintext:',
    '',
    ...fence('text', V.plaintext),
    'Associated data as UTF-8 text:',
    '',
    ...fence('text', `fleetlet-sealed-secret-v1\n${canonicalJson({ arg, commandId, deviceId, type })}`),
    'Sealed value:',
    '',
    ...fence('json', JSON.stringify(sealed, null, 2)),
  ].join('\n');
}
