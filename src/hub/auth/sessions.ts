import type { HubDatabase } from '../db/open.js';
import type { LoginRequest, Role } from '../../protocol/hub-api.js';
import { ApiRequestError } from '../api/errors.js';
import { checkRole, weakerRole } from './accounts.js';
import { DUMMY_PASSWORD_HASH, newBearerSecret, secretHash, verifyPassword } from './secrets.js';

/** Who a request acts as, once authenticated. */
export interface Principal {
  username: string;
  role: Role;
  via: 'session' | 'token';
  expiresAtMs: number | null;
}

export interface LoginPolicy {
  sessionHours: number;
  /** Failed logins per account within the window; an address may fail four times as often (several people behind a NAT). */
  maxFailures: number;
  windowSeconds: number;
}

export const SESSION_COOKIE = 'fleetlet_session';

/**
 * Logs in with a password and returns the new session's secret (for the cookie). Failed attempts are counted per
 * account and per address in fixed windows in the database, so the limit holds across hub restarts and replicas.
 */
export async function login(
  hub: HubDatabase,
  request: LoginRequest,
  remoteAddr: string,
  policy: LoginPolicy,
  now: number,
): Promise<{ session: string; principal: Principal }> {
  const windowMs = policy.windowSeconds * 1000;
  const windowStart = now - (now % windowMs);
  const keys = [
    { key: `user:${request.username}`, max: policy.maxFailures },
    { key: `addr:${remoteAddr}`, max: policy.maxFailures * 4 },
  ];
  const counted = await hub.db
    .selectFrom('login_attempts')
    .select(['attempt_key', 'failures'])
    .where('attempt_key', 'in', keys.map((k) => k.key))
    .where('window_start_ms', '=', windowStart)
    .execute();
  const retryAfterSeconds = Math.ceil((windowStart + windowMs - now) / 1000);
  for (const { key, max } of keys) {
    if ((counted.find((c) => c.attempt_key === key)?.failures ?? 0) >= max) {
      await audit(hub, { actor: request.username, action: 'login.refused', target: key.split(':')[0]!, remoteAddr }, now);
      throw new ApiRequestError(429, 'too many failed logins; try again later', undefined, retryAfterSeconds);
    }
  }
  const operator = await hub.db
    .selectFrom('operators')
    .selectAll()
    .where('username', '=', request.username)
    .executeTakeFirst();
  const passwordOk = await verifyPassword(request.password, operator?.password_hash ?? DUMMY_PASSWORD_HASH);
  if (!operator || !passwordOk || operator.disabled === 1) {
    await countFailures(hub, keys.map(({ key }) => key), windowStart);
    await audit(hub, { actor: request.username, action: 'login.failed', target: null, remoteAddr }, now);
    throw new ApiRequestError(401, 'wrong user name or password');
  }
  const session = newBearerSecret('fls_');
  const expiresAtMs = now + policy.sessionHours * 3_600_000;
  await hub.db
    .insertInto('operator_sessions')
    .values({ token_hash: secretHash(session), operator_id: operator.id, created_at_ms: now, expires_at_ms: expiresAtMs, last_used_at_ms: now })
    .execute();
  await hub.db.deleteFrom('login_attempts').where('window_start_ms', '<', windowStart - windowMs).execute();
  // Expired sessions are useless; dropping them here keeps the table as small as the logins of one session length.
  await hub.db.deleteFrom('operator_sessions').where('expires_at_ms', '<=', now).execute();
  await audit(hub, { actor: operator.username, action: 'login', target: null, remoteAddr }, now);
  return { session, principal: { username: operator.username, role: checkRole(operator.role), via: 'session', expiresAtMs } };
}

export async function logout(hub: HubDatabase, session: string): Promise<void> {
  await hub.db.deleteFrom('operator_sessions').where('token_hash', '=', secretHash(session)).execute();
}

/** The principal of a session secret (the cookie), or undefined when it is unknown, expired or its operator disabled. */
export async function sessionPrincipal(hub: HubDatabase, session: string, now: number): Promise<Principal | undefined> {
  const row = await hub.db
    .selectFrom('operator_sessions')
    .innerJoin('operators', 'operators.id', 'operator_sessions.operator_id')
    .select(['operators.username', 'operators.role', 'operators.disabled', 'operator_sessions.expires_at_ms'])
    .where('operator_sessions.token_hash', '=', secretHash(session))
    .executeTakeFirst();
  if (!row || row.disabled === 1 || row.expires_at_ms <= now) return undefined;
  return { username: row.username, role: checkRole(row.role), via: 'session', expiresAtMs: row.expires_at_ms };
}

/** The principal of an API token (Authorization: Bearer), with the weaker of the token's and its operator's role. */
export async function tokenPrincipal(hub: HubDatabase, token: string, now: number): Promise<Principal | undefined> {
  const row = await hub.db
    .selectFrom('api_tokens')
    .innerJoin('operators', 'operators.id', 'api_tokens.operator_id')
    .select([
      'api_tokens.id',
      'api_tokens.role as tokenRole',
      'api_tokens.revoked',
      'api_tokens.expires_at_ms',
      'api_tokens.last_used_at_ms',
      'operators.username',
      'operators.role',
      'operators.disabled',
    ])
    .where('api_tokens.token_hash', '=', secretHash(token))
    .executeTakeFirst();
  if (!row || row.revoked === 1 || row.disabled === 1 || (row.expires_at_ms !== null && row.expires_at_ms <= now)) return undefined;
  // Once a minute at most: a script polling every second should not turn every read into a write.
  if (row.last_used_at_ms === null || now - row.last_used_at_ms > 60_000) {
    await hub.db.updateTable('api_tokens').set({ last_used_at_ms: now }).where('id', '=', row.id).execute();
  }
  return {
    username: row.username,
    role: weakerRole(checkRole(row.tokenRole), checkRole(row.role)),
    via: 'token',
    expiresAtMs: row.expires_at_ms,
  };
}

export interface AuditEntry {
  actor: string;
  action: string;
  target: string | null;
  remoteAddr: string | null;
  detail?: Record<string, unknown>;
}

/** One more failure for each key in the window starting at windowStart (logins, and refused enrolments). */
export async function countFailures(hub: HubDatabase, keys: string[], windowStart: number): Promise<void> {
  for (const key of keys) {
    await hub.db
      .insertInto('login_attempts')
      .values({ attempt_key: key, window_start_ms: windowStart, failures: 1 })
      .onConflict((oc) => oc.columns(['attempt_key', 'window_start_ms']).doUpdateSet((eb) => ({ failures: eb('login_attempts.failures', '+', 1) })))
      .execute();
  }
}

export async function audit(hub: HubDatabase, entry: AuditEntry, now: number): Promise<void> {
  await hub.db
    .insertInto('audit_log')
    .values({
      at_ms: now,
      actor: entry.actor,
      action: entry.action,
      target: entry.target,
      detail_json: entry.detail ? JSON.stringify(entry.detail) : null,
      remote_addr: entry.remoteAddr,
    })
    .execute();
}
