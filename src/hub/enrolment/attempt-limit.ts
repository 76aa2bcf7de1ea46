import type { HubDatabase } from '../db/open.js';
import { ApiRequestError } from '../api/errors.js';
import { countFailures } from '../auth/sessions.js';

/**
 * Refused enrolment attempts counted per bootstrap token and per address in fixed windows, in the table logins use
 * (keys `enrol-token:` and `enrol-addr:`), so the limit holds across restarts and replicas. An address may fail four
 * times as often as a token: a factory enrols many devices from behind one NAT.
 */
export interface AttemptPolicy {
  maxFailures: number;
  windowSeconds: number;
}

function keys(remoteAddr: string, tokenKey: string | undefined, policy: AttemptPolicy) {
  return [
    { key: `enrol-addr:${remoteAddr}`, max: policy.maxFailures * 4 },
    ...(tokenKey ? [{ key: `enrol-token:${tokenKey}`, max: policy.maxFailures }] : []),
  ];
}

/** Throws 429 when the address or the token used up its refusals in this window. */
export async function checkAttempts(hub: HubDatabase, remoteAddr: string, tokenKey: string | undefined, policy: AttemptPolicy, now: number): Promise<void> {
  const windowMs = policy.windowSeconds * 1000;
  const windowStart = now - (now % windowMs);
  const wanted = keys(remoteAddr, tokenKey, policy);
  const counted = await hub.db
    .selectFrom('login_attempts')
    .select(['attempt_key', 'failures'])
    .where('attempt_key', 'in', wanted.map((k) => k.key))
    .where('window_start_ms', '=', windowStart)
    .execute();
  for (const { key, max } of wanted) {
    if (Number(counted.find((c) => c.attempt_key === key)?.failures ?? 0) >= max) {
      throw new ApiRequestError(429, 'too many refused enrolment attempts; try again later', undefined, Math.ceil((windowStart + windowMs - now) / 1000));
    }
  }
}

export async function countRefusal(hub: HubDatabase, remoteAddr: string, tokenKey: string | undefined, policy: AttemptPolicy, now: number): Promise<void> {
  const windowMs = policy.windowSeconds * 1000;
  const windowStart = now - (now % windowMs);
  await countFailures(
    hub,
    keys(remoteAddr, tokenKey, policy).map(({ key }) => key),
    windowStart,
  );
}
