import { sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from './canonical-json.js';
import { publicKeyFromBase64, publicKeyToBase64 } from './ed25519-keys.js';

/**
 * The fleet's trust document, after The Update Framework's roles: an offline root key signs which operator keys may
 * sign which commands for which targets until when, and which release keys sign fleetlet builds. A device accepts a
 * new document only with a higher version, signed by the root it holds (and, when the root changes, by the new root
 * too), so that an old document with a since-revoked key can never be played back to it.
 *
 * This file imports nothing from command.ts: the trust.update arguments there are built from the schema here.
 */

export const TRUST_KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** The key id under which a device knows the current root key; it may only sign trust.update. */
export const ROOT_KEY_ID = 'root';

const Ed25519PublicKey = z
  .string()
  .regex(/^[A-Za-z0-9+/]{43}=$/, { error: 'expected an Ed25519 public key: 32 bytes in base64 (44 characters)' });
const KeyId = z.string().regex(TRUST_KEY_ID_PATTERN, { error: 'expected a key id: 1-64 of A-Z a-z 0-9 . _ -' });
const Signature = z.string().regex(/^[A-Za-z0-9+/]{86}==$/, { error: 'expected an Ed25519 signature in base64' });

/** A command type (`k3s.upgrade`) or `*` for every type. */
const ScopeType = z.string().regex(/^(?:\*|[a-z0-9]+(?:\.[a-z0-9-]+)*)$/, { error: 'expected a command type or *' });
/** `device:<id>`, `group:<name>` or `*`; a key scoped to a device cannot reach it through a group. */
const ScopeTarget = z.string().regex(/^(?:\*|(?:device|group):[a-z0-9][a-z0-9_-]{0,62})$/, { error: 'expected device:<id>, group:<name> or *' });

export const KeyScopesSchema = z.strictObject({
  types: z.array(ScopeType).min(1).max(32),
  targets: z.array(ScopeTarget).min(1).max(256),
});
export type KeyScopes = z.output<typeof KeyScopesSchema>;

export const OperatorKeySchema = z.strictObject({
  id: KeyId,
  publicKey: Ed25519PublicKey,
  scopes: KeyScopesSchema,
  /** Milliseconds since the epoch; after it the key's commands are refused as `key_expired`. */
  expiresAt: z.int().min(0).optional(),
});
export type OperatorKey = z.output<typeof OperatorKeySchema>;

export const ReleaseKeySchema = z.strictObject({ id: KeyId, publicKey: Ed25519PublicKey });

export const TrustDocumentSchema = z
  .strictObject({
    schemaVersion: z.literal(1),
    /** Only ever increases; a device refuses a document whose version is not above the one it holds. */
    version: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
    issuedAt: z.int().min(0),
    /**
     * After this time every operator key of the document counts as expired (`key_expired`), until a newer document
     * arrives: a fleet cut off from its operators' revocations stops obeying old keys. The root is never affected.
     */
    expiresAt: z.int().min(0).optional(),
    /** The root key that signs the next version; a change is a root rotation (signed by the old and the new root). */
    root: z.strictObject({ publicKey: Ed25519PublicKey }),
    operatorKeys: z.array(OperatorKeySchema).max(64),
    releaseKeys: z.array(ReleaseKeySchema).max(16),
    /** Key ids taken back: their commands are refused by name (`revoked_key`), also when resumed after a restart. */
    revoked: z.array(KeyId).max(1024),
  })
  .refine((doc) => new Set([...doc.operatorKeys, ...doc.releaseKeys].map((k) => k.id)).size === doc.operatorKeys.length + doc.releaseKeys.length, {
    error: 'key ids must be unique',
  })
  .refine((doc) => ![...doc.operatorKeys, ...doc.releaseKeys].some((k) => k.id === ROOT_KEY_ID || doc.revoked.includes(k.id)), {
    error: `a listed key may neither be called "${ROOT_KEY_ID}" nor be revoked`,
  });
export type TrustDocument = z.output<typeof TrustDocumentSchema>;

export const SignedTrustDocumentSchema = z.strictObject({
  document: TrustDocumentSchema,
  /** By the current root, and also by the new root when the document names another one. */
  signatures: z.array(z.strictObject({ publicKey: Ed25519PublicKey, sig: Signature })).min(1).max(4),
});
export type SignedTrustDocument = z.output<typeof SignedTrustDocumentSchema>;

/** Prefixed to what a root signs, so that a trust signature is never valid as a command's or a release's. */
export const TRUST_SIGNING_DOMAIN = 'fleetlet-trust-v1\n';
/** Prefixed to what a release key signs. */
export const RELEASE_SIGNING_DOMAIN = 'fleetlet-release-v1\n';

export function trustSigningBytes(document: TrustDocument): Buffer {
  return Buffer.from(TRUST_SIGNING_DOMAIN + canonicalJson(document), 'utf8');
}

/** What a release key signs for an agent.upgrade: the build's version and the sha256 of its binary. */
export function releaseSigningBytes(release: { version: string; sha256: string }): Buffer {
  return Buffer.from(RELEASE_SIGNING_DOMAIN + canonicalJson({ sha256: release.sha256, version: release.version }), 'utf8');
}

export function signBytes(bytes: Buffer, privateKey: KeyObject): string {
  return sign(null, bytes, privateKey).toString('base64');
}

export function signatureHolds(bytes: Buffer, publicKeyBase64: string, sig: string): boolean {
  try {
    return verify(null, bytes, publicKeyFromBase64(publicKeyBase64), Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
}

/** Signs a document with each root key given (the current root; for a rotation, the old and the new). */
export function signTrustDocument(document: TrustDocument, rootKeys: readonly KeyObject[]): SignedTrustDocument {
  const bytes = trustSigningBytes(document);
  return {
    document,
    signatures: rootKeys.map((key) => ({ publicKey: publicKeyToBase64(key), sig: signBytes(bytes, key) })),
  };
}

/** True when one of the signatures is by `publicKeyBase64` and holds over the document. */
export function signedBy(signed: SignedTrustDocument, publicKeyBase64: string): boolean {
  const bytes = trustSigningBytes(signed.document);
  return signed.signatures.some((s) => s.publicKey === publicKeyBase64 && signatureHolds(bytes, s.publicKey, s.sig));
}

/** Two documents with the same content, whatever their member order. */
export function canonicalTrustEquals(a: TrustDocument, b: TrustDocument): boolean {
  return canonicalJson(a) === canonicalJson(b);
}
