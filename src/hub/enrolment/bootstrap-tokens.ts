import type { HubDatabase } from '../db/open.js';
import { newBearerSecret, secretHash } from '../auth/secrets.js';
import { audit } from '../auth/sessions.js';
import { EnrolmentAdminError } from './errors.js';

/**
 * Bootstrap tokens (`fle_...`): baked into an image or handed to install.sh, they can do nothing but enrol, at most
 * `uses` devices, until they expire or are revoked. Only the sha256 is stored; the token is shown once.
 */
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MAX_TOKEN_USES = 1_000_000;

export interface NewBootstrapToken {
  name: string;
  uses: number;
  expiresInMs: number;
  autoApprove: boolean;
}

export interface BootstrapTokenInfo {
  id: number;
  name: string;
  uses: number;
  maxUses: number;
  autoApprove: boolean;
  createdAtMs: number;
  expiresAtMs: number;
  revoked: boolean;
}

/** A usable token as the enrol route sees it. */
export interface ValidBootstrapToken {
  id: number;
  name: string;
  autoApprove: boolean;
  usesLeft: number;
}

export async function createBootstrapToken(hub: HubDatabase, options: NewBootstrapToken, actor: string, now: number): Promise<{ token: string; id: number }> {
  if (!TOKEN_NAME.test(options.name)) throw new EnrolmentAdminError(`token name "${options.name}": expected 1-64 of A-Z a-z 0-9 . _ -`);
  if (!Number.isInteger(options.uses) || options.uses < 1 || options.uses > MAX_TOKEN_USES) {
    throw new EnrolmentAdminError(`uses must be a whole number from 1 to ${MAX_TOKEN_USES}`);
  }
  const token = newBearerSecret('fle_');
  const row = await hub.db
    .insertInto('enrol_tokens')
    .values({
      name: options.name,
      token_hash: secretHash(token),
      max_uses: options.uses,
      uses: 0,
      auto_approve: options.autoApprove ? 1 : 0,
      created_at_ms: now,
      expires_at_ms: now + options.expiresInMs,
      revoked: 0,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await audit(hub, { actor, action: 'enrol-token.create', target: options.name, remoteAddr: null, detail: { id: Number(row.id), uses: options.uses, autoApprove: options.autoApprove } }, now);
  return { token, id: Number(row.id) };
}

export async function listBootstrapTokens(hub: HubDatabase): Promise<BootstrapTokenInfo[]> {
  const rows = await hub.db.selectFrom('enrol_tokens').selectAll().orderBy('id').execute();
  return rows.map((r) => ({
    id: Number(r.id),
    name: r.name,
    uses: Number(r.uses),
    maxUses: Number(r.max_uses),
    autoApprove: Number(r.auto_approve) === 1,
    createdAtMs: Number(r.created_at_ms),
    expiresAtMs: Number(r.expires_at_ms),
    revoked: Number(r.revoked) === 1,
  }));
}

/** Revokes by id or by name (every token of that name). */
export async function revokeBootstrapToken(hub: HubDatabase, idOrName: string, actor: string, now: number): Promise<number> {
  const byId = /^\d+$/.test(idOrName);
  const result = await hub.db
    .updateTable('enrol_tokens')
    .set({ revoked: 1 })
    .where(byId ? 'id' : 'name', '=', byId ? Number(idOrName) : idOrName)
    .executeTakeFirst();
  const count = Number(result.numUpdatedRows);
  if (count === 0) throw new EnrolmentAdminError(`no bootstrap token "${idOrName}" (see: fleetlet hub enrol-token list)`);
  await audit(hub, { actor, action: 'enrol-token.revoke', target: idOrName, remoteAddr: null }, now);
  return count;
}

/** The token behind a bearer secret, or why it cannot enrol. */
export async function findBootstrapToken(hub: HubDatabase, secret: string, now: number): Promise<ValidBootstrapToken | { refused: string }> {
  const row = await hub.db.selectFrom('enrol_tokens').selectAll().where('token_hash', '=', secretHash(secret)).executeTakeFirst();
  if (!row) return { refused: 'the bootstrap token is not known to this hub' };
  if (Number(row.revoked) === 1) return { refused: `the bootstrap token "${row.name}" was revoked` };
  if (Number(row.expires_at_ms) <= now) return { refused: `the bootstrap token "${row.name}" expired at ${new Date(Number(row.expires_at_ms)).toISOString()}` };
  return { id: Number(row.id), name: row.name, autoApprove: Number(row.auto_approve) === 1, usesLeft: Number(row.max_uses) - Number(row.uses) };
}
