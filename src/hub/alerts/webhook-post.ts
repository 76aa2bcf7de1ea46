import { createHmac } from 'node:crypto';
import { errorMessage } from '../../lib/errors.js';
import type { WebhookTarget } from './webhook-secrets.js';

/**
 * One POST of a delivery's body to its webhook, signed, bounded in time (connect to the last byte of the response)
 * and in what it reads back. Redirects are not followed: a receiver that moved is a configuration to fix, and
 * following one would send the signed body somewhere nobody configured.
 */
export interface PostOutcome {
  ok: boolean;
  /** HTTP status, when the receiver answered. */
  status?: number;
  /** The receiver's Retry-After, in ms from now. */
  retryAfterMs?: number;
  /** Why it failed, free of the URL (which may hold a token) and of the key. */
  error?: string;
}

export const SIGNATURE_HEADER = 'x-fleetlet-signature';
export const DELIVERY_HEADER = 'x-fleetlet-delivery';
/** Enough for any receiver's "ok" or error text; the rest is not read. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export function signatureOf(body: string, key: Buffer): string {
  return `sha256=${createHmac('sha256', key).update(body).digest('hex')}`;
}

export async function postWebhook(
  target: WebhookTarget,
  delivery: { deliveryId: string; event: string; body: string },
  timeoutMs: number,
  nowMs: () => number = Date.now,
): Promise<PostOutcome> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const res = await fetch(target.url, {
      method: 'POST',
      redirect: 'manual',
      signal,
      headers: {
        'content-type': 'application/json',
        'user-agent': 'fleetlet-hub',
        [SIGNATURE_HEADER]: signatureOf(delivery.body, target.key),
        [DELIVERY_HEADER]: delivery.deliveryId,
        'x-fleetlet-event': delivery.event,
      },
      body: delivery.body,
    });
    await drain(res);
    const ok = res.status >= 200 && res.status < 300;
    const retryAfterMs = retryAfter(res.headers.get('retry-after'), nowMs());
    return {
      ok,
      status: res.status,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      ...(ok ? {} : { error: `HTTP ${res.status}` }),
    };
  } catch (err) {
    return { ok: false, error: signal.aborted ? `no answer within ${timeoutMs} ms` : errorMessage(err, { withCause: true }).slice(0, 300) };
  }
}

/** Reads the response up to MAX_RESPONSE_BYTES and drops the rest (the connection goes with it). */
async function drain(res: Response): Promise<void> {
  if (!res.body) return;
  const reader = res.body.getReader();
  let read = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    read += value.byteLength;
    if (read > MAX_RESPONSE_BYTES) {
      await reader.cancel();
      return;
    }
  }
}

/** Retry-After as seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfter(header: string | null, nowMs: number): number | undefined {
  if (header === null) return undefined;
  const value = header.trim();
  if (/^\d{1,10}$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}
