import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { z } from 'zod';
import { FleetletError } from '../lib/errors.js';
import { canonicalJson } from './canonical-json.js';

/**
 * A secret command argument sealed to one device's X25519 key: an ephemeral X25519 key agreement, HKDF-SHA256 and
 * AES-256-GCM. The command id, the command type, the argument's name and the device id are the associated data, so a
 * sealed value opens only for that device, inside that command, as that argument: moved anywhere else, it fails.
 * Only the device's private key opens it; the broker, other devices and the journal see ciphertext.
 */
export const SEAL_ALGORITHM = 'X25519-HKDF-SHA256-A256GCM';
const HKDF_INFO = 'fleetlet-sealed-secret-v1';
const AAD_DOMAIN = 'fleetlet-sealed-secret-v1\n';
const BASE64_32_BYTES = /^[A-Za-z0-9+/]{43}=$/;
const BASE64_12_BYTES = /^[A-Za-z0-9+/]{16}$/;
/** A secret of up to 4 KiB plus the 16-byte tag, in base64. */
const MAX_CIPHERTEXT_BASE64 = Math.ceil((4096 + 16) / 3) * 4;

export const SealedSecretSchema = z.strictObject({
  alg: z.literal(SEAL_ALGORITHM),
  /** The sender's ephemeral X25519 public key (32 bytes, base64). */
  epk: z.string().regex(BASE64_32_BYTES, { error: 'expected a 32-byte X25519 public key in base64' }),
  /** The AES-GCM nonce (12 bytes, base64). */
  nonce: z.string().regex(BASE64_12_BYTES, { error: 'expected a 12-byte nonce in base64' }),
  /** Ciphertext followed by the 16-byte GCM tag, base64. */
  ct: z
    .string()
    .min(24)
    .max(MAX_CIPHERTEXT_BASE64)
    .regex(/^[A-Za-z0-9+/]+={0,2}$/, { error: 'expected base64' }),
});
export type SealedSecret = z.output<typeof SealedSecretSchema>;

/** What a sealed value is bound to; any difference at the opening side makes it fail. */
export interface SealBinding {
  commandId: string;
  type: string;
  arg: string;
  deviceId: string;
}

/** The device public key as inventories publish it: the raw 32 bytes in base64. */
export const SealPublicKeySchema = z.string().regex(BASE64_32_BYTES, { error: 'expected a 32-byte X25519 public key in base64' });

/** A sealed secret that cannot be made or opened; sending it again as it is cannot help. */
export class SealedSecretError extends FleetletError {
  readonly severity = 'fatal';
}

export function generateSealKeyPair(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('x25519');
}

export function sealPublicKeyToBase64(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.crv !== 'X25519' || !jwk.x) throw new SealedSecretError('not an X25519 key');
  return Buffer.from(jwk.x, 'base64url').toString('base64');
}

export function sealPublicKeyFromBase64(raw: string): KeyObject {
  if (!SealPublicKeySchema.safeParse(raw).success) throw new SealedSecretError('a device seal key is 32 bytes in base64');
  const x = Buffer.from(raw, 'base64').toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
}

/** `fixed` is for test vectors only: a reused ephemeral key or nonce would give the secret away. */
export function sealSecret(
  plaintext: string,
  recipient: KeyObject,
  binding: SealBinding,
  fixed?: { ephemeralPrivateKey: KeyObject; nonce: Buffer },
): SealedSecret {
  const ephemeralPrivateKey = fixed?.ephemeralPrivateKey ?? generateSealKeyPair().privateKey;
  const epk = sealPublicKeyToBase64(createPublicKey(ephemeralPrivateKey));
  const key = deriveKey(diffieHellman({ privateKey: ephemeralPrivateKey, publicKey: recipient }), epk, sealPublicKeyToBase64(recipient));
  const nonce = fixed?.nonce ?? randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(associatedData(binding));
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return { alg: SEAL_ALGORITHM, epk, nonce: nonce.toString('base64'), ct: ct.toString('base64') };
}

/** Opens with the device's private key; throws SealedSecretError for another key, binding, or a changed byte. */
export function openSealedSecret(sealed: SealedSecret, privateKey: KeyObject, binding: SealBinding): string {
  try {
    const ownPublic = sealPublicKeyToBase64(createPublicKey(privateKey));
    const key = deriveKey(diffieHellman({ privateKey, publicKey: sealPublicKeyFromBase64(sealed.epk) }), sealed.epk, ownPublic);
    const bytes = Buffer.from(sealed.ct, 'base64');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.nonce, 'base64'));
    decipher.setAAD(associatedData(binding));
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    return Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - 16)), decipher.final()]).toString('utf8');
  } catch {
    // Never say more: which check failed is of use only to someone probing.
    throw new SealedSecretError(`the sealed ${binding.arg} does not open with this device's key for this command`);
  }
}

/** Both public keys go into the salt, so the derived key belongs to this one exchange with this one recipient. */
function deriveKey(shared: Buffer, epk: string, recipient: string): Buffer {
  const salt = Buffer.concat([Buffer.from(epk, 'base64'), Buffer.from(recipient, 'base64')]);
  return Buffer.from(hkdfSync('sha256', shared, salt, HKDF_INFO, 32));
}

function associatedData(binding: SealBinding): Buffer {
  const { commandId, type, arg, deviceId } = binding;
  return Buffer.from(AAD_DOMAIN + canonicalJson({ arg, commandId, deviceId, type }), 'utf8');
}

/** An X25519 private key from its raw 32 bytes (hex), for test vectors. */
export function sealPrivateKeyFromHex(hex: string): KeyObject {
  const d = Buffer.from(hex, 'hex');
  if (d.length !== 32) throw new SealedSecretError('an X25519 private key is 32 bytes');
  // The public half is not needed to import a JWK private key, but the field is required: derive it.
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), d]);
  return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
}

/** Fixed inputs for the test vector in docs/protocol.md (RFC 7748 section 6.1's keys). */
export const SEALING_VECTOR = {
  recipientPrivateHex: '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb',
  ephemeralPrivateHex: '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a',
  nonceHex: '000102030405060708090a0b',
  binding: { commandId: 'c-sealed-vector-1', type: 'k3s.configure', arg: 'joinToken', deviceId: 'pi-kitchen-01' },
  plaintext: 'K10example-agent-token::node:0123456789abcdef',
} as const;
