import { readFileSync } from 'node:fs';
import { publicKeyFromBase64 } from '../protocol/ed25519-keys.js';
import { join } from 'node:path';
import { writeFileAtomic } from '../lib/files.js';
import { errorReason, FleetletError, isErrno } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { parseStrictJson } from '../protocol/strict-json.js';
import {
  ROOT_KEY_ID,
  SignedTrustDocumentSchema,
  canonicalTrustEquals,
  releaseSigningBytes,
  signatureHolds,
  signedBy,
  type SignedTrustDocument,
} from '../protocol/trust-document.js';
import type { TrustedKey } from './verify.js';

/** The trust document the device holds, in its state directory. Public data: mode 0644. */
export const TRUST_FILE = 'trust.json';
const MAX_TRUST_FILE_BYTES = 256 * 1024;

/** The trust file in the state directory does not read, or is not signed by the root it names. */
export class TrustFileError extends FleetletError {
  readonly severity = 'fatal';
}

export type TrustRefusal =
  | 'no_trust_root'
  | 'trust_bad_signature'
  | 'trust_root_not_cosigned'
  | 'trust_rollback'
  | 'trust_expired';

export type TrustApplied =
  | { ok: true; detail: string }
  | { ok: false; reason: TrustRefusal; detail: string };

export interface ReleaseCheck {
  version: string;
  sha256: string;
  releaseSignature?: { keyId: string; sig: string } | undefined;
}

export type ReleaseVerdict = { ok: true } | { ok: false; reason: 'release_unsigned' | 'release_signature_invalid'; detail: string };

export interface TrustStateOptions {
  stateDir: string;
  /** `commands.trustRoot`: the root a device trusts before it holds any document. */
  bootstrapRoot?: string | undefined;
  /** `commands.trustedKeys`: unscoped keys used only while no trust document is held. */
  fallbackKeys: ReadonlyMap<string, TrustedKey>;
  logger: Logger;
  now?: () => number;
}

/**
 * The device's side of the layered trust: which keys may sign what now. While no trust document is held, the
 * configured keys act unscoped (as before trust documents existed); once one is, it alone decides. The root key
 * itself is listed under the id `root`, allowed to sign trust.update only, so that a device with only a bootstrap
 * root configured can receive its first document.
 */
export class TrustState {
  private held: SignedTrustDocument | undefined;
  /** Set when the trust file did not hold at start, until a new document is accepted. */
  private damaged = false;
  private keyMap: ReadonlyMap<string, TrustedKey>;

  constructor(private readonly options: TrustStateOptions) {
    this.held = this.load();
    this.keyMap = this.buildKeys();
  }

  /** The document in force, if any. */
  document(): SignedTrustDocument | undefined {
    return this.held;
  }

  keys(): ReadonlyMap<string, TrustedKey> {
    return this.keyMap;
  }

  private currentRoot(): string | undefined {
    return this.held?.document.root.publicKey ?? this.options.bootstrapRoot;
  }

  /**
   * Takes a new document: signed by the current root (and by the new root when it names another), with a version
   * above the one held; persisted atomically before it is used, so that a power cut leaves the old or the new.
   */
  async apply(signed: SignedTrustDocument): Promise<TrustApplied> {
    const root = this.currentRoot();
    if (!root) return { ok: false, reason: 'no_trust_root', detail: 'no trust root is configured (commands.trustRoot) and no trust document is held' };
    const { document } = signed;
    if (this.held && document.version === this.held.document.version && canonicalTrustEquals(document, this.held.document)) {
      return { ok: true, detail: `trust document version ${document.version} is already in force` };
    }
    if (!signedBy(signed, root)) return { ok: false, reason: 'trust_bad_signature', detail: 'the document is not signed by the current root key' };
    if (document.root.publicKey !== root && !signedBy(signed, document.root.publicKey)) {
      return { ok: false, reason: 'trust_root_not_cosigned', detail: 'the document names a new root key, which did not sign it too' };
    }
    if (document.expiresAt !== undefined && document.expiresAt <= (this.options.now ?? Date.now)()) {
      return { ok: false, reason: 'trust_expired', detail: `the document expired at ${new Date(document.expiresAt).toISOString()}` };
    }
    const heldVersion = this.held?.document.version ?? 0;
    if (document.version <= heldVersion) {
      return { ok: false, reason: 'trust_rollback', detail: `version ${document.version} is not above the version ${heldVersion} in force` };
    }
    await writeFileAtomic(join(this.options.stateDir, TRUST_FILE), `${JSON.stringify(signed, null, 2)}\n`, { mode: 0o644 });
    this.held = signed;
    this.damaged = false;
    this.keyMap = this.buildKeys();
    const rotated = document.root.publicKey !== root ? '; the root key was rotated' : '';
    return {
      ok: true,
      detail: `trust document version ${document.version} in force: ${document.operatorKeys.length} operator key(s), ${document.releaseKeys.length} release key(s), ${document.revoked.length} revoked${rotated}`,
    };
  }

  /**
   * An agent.upgrade build must be signed by a release key of the document in force, once that document names any;
   * before that, the operator's signature over the sha256 is what vouches for it.
   */
  checkRelease(release: ReleaseCheck): ReleaseVerdict {
    const releaseKeys = this.held?.document.releaseKeys ?? [];
    if (releaseKeys.length === 0) return { ok: true };
    const signature = release.releaseSignature;
    if (!signature) return { ok: false, reason: 'release_unsigned', detail: 'the trust document names release keys, and this build carries no release signature' };
    const key = releaseKeys.find((k) => k.id === signature.keyId);
    if (!key) return { ok: false, reason: 'release_signature_invalid', detail: `"${signature.keyId}" is not a release key of trust document version ${this.held?.document.version}` };
    if (!signatureHolds(releaseSigningBytes(release), key.publicKey, signature.sig)) {
      return { ok: false, reason: 'release_signature_invalid', detail: `the signature of release key "${key.id}" does not hold over ${release.version} ${release.sha256}` };
    }
    return { ok: true };
  }

  private buildKeys(): ReadonlyMap<string, TrustedKey> {
    const root = this.currentRoot();
    const rootEntry: [string, TrustedKey][] = root
      ? [[ROOT_KEY_ID, { key: publicKeyFromBase64(root), revoked: false, scopes: { types: ['trust.update'], targets: ['*'] } }]]
      : [];
    if (!this.held) return new Map(this.damaged ? rootEntry : [...this.options.fallbackKeys, ...rootEntry]);
    const { document } = this.held;
    const expiry = (key: number | undefined) => {
      const earliest = Math.min(key ?? Infinity, document.expiresAt ?? Infinity);
      return Number.isFinite(earliest) ? { expiresAt: earliest } : {};
    };
    return new Map<string, TrustedKey>([
      // The key of a revoked entry is never used: a revoked key is refused before any signature is checked.
      ...document.revoked.map((id): [string, TrustedKey] => [id, { key: publicKeyFromBase64(root!), revoked: true }]),
      ...document.operatorKeys.map((k): [string, TrustedKey] => [
        k.id,
        { key: publicKeyFromBase64(k.publicKey), revoked: false, scopes: k.scopes, ...expiry(k.expiresAt) },
      ]),
      ...rootEntry,
    ]);
  }

  /**
   * The document a previous run accepted. It was checked when it came; here it must still be signed by the root it
   * names, so that a damaged or edited file is noticed. A file that does not hold leaves the device with the
   * bootstrap root alone (no configured keys: they could bring back a key the fleet revoked), so that the fleet
   * can send the document again rather than visit the device.
   */
  private load(): SignedTrustDocument | undefined {
    const file = join(this.options.stateDir, TRUST_FILE);
    try {
      return this.read(file);
    } catch (err) {
      this.damaged = true;
      this.options.logger.error({ err }, 'the trust document does not hold; only a trust.update signed by the bootstrap root is accepted');
      return undefined;
    }
  }

  private read(file: string): SignedTrustDocument | undefined {
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw new TrustFileError(`cannot read ${file}: ${errorReason(err)}`);
    }
    if (bytes.length > MAX_TRUST_FILE_BYTES) throw new TrustFileError(`${file} is larger than ${MAX_TRUST_FILE_BYTES} bytes`);
    const strict = parseStrictJson(bytes);
    const parsed = strict.ok ? SignedTrustDocumentSchema.safeParse(strict.value) : undefined;
    if (!parsed?.success) throw new TrustFileError(`${file} is not a trust document`);
    if (!signedBy(parsed.data, parsed.data.document.root.publicKey)) throw new TrustFileError(`${file} is not signed by the root key it names`);
    this.options.logger.info({ version: parsed.data.document.version }, 'trust document in force');
    return parsed.data;
  }
}
