import { existsSync, readFileSync, statSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { errorReason, FleetletError, UsageError } from '../lib/errors.js';
import { writeFileAtomic } from '../lib/files.js';
import { publicKeyToBase64 } from '../protocol/ed25519-keys.js';
import { COMMAND_TYPES } from '../protocol/command.js';
import { parseStrictJson } from '../protocol/strict-json.js';
import {
  ROOT_KEY_ID,
  SignedTrustDocumentSchema,
  TrustDocumentSchema,
  releaseSigningBytes,
  signBytes,
  signTrustDocument,
  signedBy,
  type KeyScopes,
  type SignedTrustDocument,
  type TrustDocument,
} from '../protocol/trust-document.js';
import { generateSigningKey } from './keygen.js';
import { loadSigningKey } from './signer.js';

/**
 * The operator's side of the trust document: a local file (public: it goes to every device) and the root key file
 * (offline: it signs every new version). Each change bumps the version and re-signs, so that a device takes it
 * (`fleetlet fleet send trust.update --arg-json document=FILE`) and refuses every older one from then on.
 */

/** The trust document file is missing, unreadable, not a trust document, or not signed by the root key given. */
export class TrustDocumentFileError extends FleetletError {
  readonly severity = 'fatal';
}

const MAX_DOCUMENT_BYTES = 256 * 1024;

export interface TrustInit {
  rootPublicKey: string;
  document: SignedTrustDocument;
}

/** Makes the root key (0600, never over an existing file) and version 1 of the document, with no key in it yet. */
export async function initTrust(documentFile: string, rootKeyFile: string, now = Date.now()): Promise<TrustInit> {
  if (existsSync(documentFile)) throw new TrustDocumentFileError(`${documentFile} already exists; refusing to start the trust over`);
  const root = generateSigningKey(rootKeyFile, ROOT_KEY_ID);
  const rootKey = loadSigningKey(rootKeyFile, ROOT_KEY_ID).key;
  const document: TrustDocument = {
    schemaVersion: 1,
    version: 1,
    issuedAt: now,
    root: { publicKey: root.publicKey },
    operatorKeys: [],
    releaseKeys: [],
    revoked: [],
  };
  const signed = signTrustDocument(document, [rootKey]);
  await writeDocument(documentFile, signed);
  return { rootPublicKey: root.publicKey, document: signed };
}

export function readTrustDocument(documentFile: string): SignedTrustDocument {
  let bytes: Buffer;
  try {
    if (statSync(documentFile).size > MAX_DOCUMENT_BYTES) throw new TrustDocumentFileError(`${documentFile} is larger than ${MAX_DOCUMENT_BYTES} bytes`);
    bytes = readFileSync(documentFile);
  } catch (err) {
    if (err instanceof TrustDocumentFileError) throw err;
    throw new TrustDocumentFileError(`cannot read ${documentFile}: ${errorReason(err)}`);
  }
  const strict = parseStrictJson(bytes);
  if (!strict.ok) throw new TrustDocumentFileError(`${documentFile}: ${strict.problem}`);
  const parsed = SignedTrustDocumentSchema.safeParse(strict.value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TrustDocumentFileError(`${documentFile} is not a trust document: ${issue?.path.join('.') || '(root)'}: ${issue?.message}`);
  }
  return parsed.data;
}

export interface KeyGrant {
  id: string;
  publicKey: string;
  /** Operator key scopes; absent for a release key. */
  scopes?: KeyScopes;
  expiresAt?: number;
  release?: boolean;
}

/** Adds an operator or release key (or replaces the entry of the same id: new scopes, a new expiry). */
export function addKey(documentFile: string, rootKeyFile: string, grant: KeyGrant, now = Date.now()): Promise<SignedTrustDocument> {
  for (const type of grant.scopes?.types ?? []) {
    if (type !== '*' && !(COMMAND_TYPES as string[]).includes(type)) throw new UsageError(`unknown command type "${type}" in --types`);
  }
  return change(documentFile, rootKeyFile, now, (doc) => {
    if (doc.revoked.includes(grant.id)) throw new UsageError(`key id "${grant.id}" was revoked; a revoked id is never used again, pick another`);
    const others = (list: { id: string }[]) => list.filter((k) => k.id !== grant.id);
    if (grant.release) {
      return { ...doc, operatorKeys: others(doc.operatorKeys) as TrustDocument['operatorKeys'], releaseKeys: [...others(doc.releaseKeys) as TrustDocument['releaseKeys'], { id: grant.id, publicKey: grant.publicKey }] };
    }
    const entry = { id: grant.id, publicKey: grant.publicKey, scopes: grant.scopes ?? { types: ['*'], targets: ['*'] }, ...(grant.expiresAt !== undefined ? { expiresAt: grant.expiresAt } : {}) };
    return { ...doc, operatorKeys: [...others(doc.operatorKeys) as TrustDocument['operatorKeys'], entry], releaseKeys: others(doc.releaseKeys) as TrustDocument['releaseKeys'] };
  });
}

/** Takes a key back: it leaves the lists and its id is listed as revoked, so that its commands are refused by name. */
export function revokeKey(documentFile: string, rootKeyFile: string, keyId: string, now = Date.now()): Promise<SignedTrustDocument> {
  return change(documentFile, rootKeyFile, now, (doc) => {
    if (doc.revoked.includes(keyId)) throw new UsageError(`"${keyId}" is already revoked (version ${doc.version})`);
    return {
      ...doc,
      operatorKeys: doc.operatorKeys.filter((k) => k.id !== keyId),
      releaseKeys: doc.releaseKeys.filter((k) => k.id !== keyId),
      revoked: [...doc.revoked, keyId],
    };
  });
}

/**
 * Sets (or, with undefined, clears) the document's expiry and re-signs: past it, devices refuse every operator key
 * until a newer version comes, so a fleet that stops hearing from its operators stops obeying old keys.
 */
export function renewTrust(documentFile: string, rootKeyFile: string, until: number | undefined, now = Date.now()): Promise<SignedTrustDocument> {
  if (until !== undefined && until <= now) throw new UsageError('--until must be in the future');
  return change(documentFile, rootKeyFile, now, (doc) => {
    const { expiresAt: _previous, ...rest } = doc;
    return until === undefined ? rest : { ...rest, expiresAt: until };
  });
}

/** Hands the fleet to a new root key: the new version names it and is signed by the old root and by the new one. */
export function rotateRoot(documentFile: string, rootKeyFile: string, newRootKeyFile: string, now = Date.now()): Promise<SignedTrustDocument> {
  const newRoot = loadSigningKey(newRootKeyFile, ROOT_KEY_ID).key;
  return change(documentFile, rootKeyFile, now, (doc) => ({ ...doc, root: { publicKey: publicKeyToBase64(newRoot) } }), [newRoot]);
}

async function change(
  documentFile: string,
  rootKeyFile: string,
  now: number,
  edit: (document: TrustDocument) => TrustDocument,
  alsoSignWith: KeyObject[] = [],
): Promise<SignedTrustDocument> {
  const current = readTrustDocument(documentFile);
  const root = loadSigningKey(rootKeyFile, ROOT_KEY_ID).key;
  if (publicKeyToBase64(root) !== current.document.root.publicKey || !signedBy(current, current.document.root.publicKey)) {
    throw new TrustDocumentFileError(`${documentFile} is not signed by the root key in ${rootKeyFile}`);
  }
  const edited = edit(current.document);
  const next = TrustDocumentSchema.safeParse({ ...edited, version: current.document.version + 1, issuedAt: Math.max(now, current.document.issuedAt) });
  if (!next.success) {
    const issue = next.error.issues[0];
    throw new UsageError(`the new trust document would be invalid: ${issue?.path.join('.') || '(document)'}: ${issue?.message}`);
  }
  const signed = signTrustDocument(next.data, [root, ...alsoSignWith]);
  await writeDocument(documentFile, signed);
  return signed;
}

async function writeDocument(documentFile: string, signed: SignedTrustDocument): Promise<void> {
  await writeFileAtomic(documentFile, `${JSON.stringify(signed, null, 2)}\n`, { mode: 0o644 });
}

/** The document for a person: version, root, every key with what it may do until when, and what was revoked. */
export function describeTrust(signed: SignedTrustDocument): string[] {
  const { document } = signed;
  const until = (ms: number | undefined) => (ms === undefined ? 'no expiry' : `until ${new Date(ms).toISOString()}`);
  return [
    `trust document version ${document.version}, issued ${new Date(document.issuedAt).toISOString()}, ${until(document.expiresAt)}`,
    `root ${document.root.publicKey} (${signed.signatures.length} signature(s))`,
    ...(document.operatorKeys.length === 0 ? ['operator keys: none'] : ['operator keys:']),
    ...document.operatorKeys.map(
      (k) => `  ${k.id} ${k.publicKey} types ${k.scopes.types.join(',')} targets ${k.scopes.targets.join(',')} ${until(k.expiresAt)}`,
    ),
    ...(document.releaseKeys.length === 0 ? ['release keys: none (agent.upgrade needs no release signature)'] : ['release keys:']),
    ...document.releaseKeys.map((k) => `  ${k.id} ${k.publicKey}`),
    `revoked: ${document.revoked.length === 0 ? 'none' : document.revoked.join(', ')}`,
  ];
}

/** The release signature an agent.upgrade carries: by a release key, over the build's version and sha256. */
export function signRelease(keyFile: string, keyId: string | undefined, release: { version: string; sha256: string }): { keyId: string; sig: string } {
  const signer = loadSigningKey(keyFile, keyId);
  return { keyId: signer.keyId, sig: signBytes(releaseSigningBytes(release), signer.key) };
}
