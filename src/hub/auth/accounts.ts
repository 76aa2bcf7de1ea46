import type { HubDatabase } from '../db/open.js';
import { ROLES, USERNAME_PATTERN, type Role } from '../../protocol/hub-api.js';
import { OperatorAccountError } from './errors.js';
import { hashPassword, newBearerSecret, secretHash } from './secrets.js';

/** Operator accounts and API tokens, as `fleetlet hub user add` and `fleetlet hub token create` make them. */
export const MIN_PASSWORD_LENGTH = 12;
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function checkRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role)) throw new OperatorAccountError(`role must be one of ${ROLES.join(', ')}, not "${role}"`);
  return role as Role;
}

/** The weaker of two roles: a token never grants more than its operator has now. */
export function weakerRole(a: Role, b: Role): Role {
  return a === 'viewer' || b === 'viewer' ? 'viewer' : 'operator';
}

export async function addOperator(hub: HubDatabase, username: string, role: Role, password: string, now: number): Promise<void> {
  if (!USERNAME_PATTERN.test(username)) throw new OperatorAccountError(`user name "${username}": expected 1-64 of a-z 0-9 . _ -`);
  if (password.length < MIN_PASSWORD_LENGTH) throw new OperatorAccountError(`the password must have at least ${MIN_PASSWORD_LENGTH} characters`);
  if (password.length > 1024) throw new OperatorAccountError('the password must have at most 1024 characters');
  const existing = await hub.db.selectFrom('operators').select('id').where('username', '=', username).executeTakeFirst();
  if (existing) throw new OperatorAccountError(`user "${username}" exists already`);
  const passwordHash = await hashPassword(password);
  await hub.db.transaction().execute(async (tx) => {
    await tx.insertInto('operators').values({ username, password_hash: passwordHash, role, created_at_ms: now, disabled: 0 }).execute();
    await tx
      .insertInto('audit_log')
      .values({ at_ms: now, actor: 'cli', action: 'user.add', target: username, detail_json: JSON.stringify({ role }), remote_addr: null })
      .execute();
  });
}

export interface CreatedToken {
  /** Shown once; only its hash is stored. */
  token: string;
  role: Role;
  expiresAtMs: number | null;
}

export async function createApiToken(
  hub: HubDatabase,
  options: { username: string; name: string; role?: Role; expiresInDays?: number },
  now: number,
): Promise<CreatedToken> {
  if (!TOKEN_NAME.test(options.name)) throw new OperatorAccountError(`token name "${options.name}": expected 1-64 of A-Z a-z 0-9 . _ -`);
  const operator = await hub.db
    .selectFrom('operators')
    .select(['id', 'role', 'disabled'])
    .where('username', '=', options.username)
    .executeTakeFirst();
  if (!operator || operator.disabled === 1) throw new OperatorAccountError(`no active user "${options.username}" (add one with: fleetlet hub user add)`);
  const role = weakerRole(checkRole(operator.role), options.role ?? checkRole(operator.role));
  const token = newBearerSecret('flt_');
  const expiresAtMs = options.expiresInDays ? now + options.expiresInDays * 86_400_000 : null;
  await hub.db.transaction().execute(async (tx) => {
    await tx
      .insertInto('api_tokens')
      .values({
        operator_id: operator.id,
        name: options.name,
        token_hash: secretHash(token),
        role,
        created_at_ms: now,
        expires_at_ms: expiresAtMs,
        last_used_at_ms: null,
        revoked: 0,
      })
      .execute();
    await tx
      .insertInto('audit_log')
      .values({
        at_ms: now,
        actor: 'cli',
        action: 'token.create',
        target: options.username,
        detail_json: JSON.stringify({ name: options.name, role }),
        remote_addr: null,
      })
      .execute();
  });
  return { token, role, expiresAtMs };
}
