import { describe, expect, it } from 'vitest';
import { HubAlertsSection } from '../../src/config/hub-alerts-schema.js';
import { WebhookDeliverer } from '../../src/hub/alerts/webhook-deliverer.js';
import { retryAfter, signatureOf } from '../../src/hub/alerts/webhook-post.js';
import type { HubDatabase } from '../../src/hub/db/open.js';
import { createLogger } from '../../src/lib/logger.js';

const delivery = HubAlertsSection.parse({ delivery: { firstRetrySeconds: 5, maxRetrySeconds: 900 } }).delivery;
const deliverer = (random: () => number) =>
  new WebhookDeliverer({ hub: undefined as unknown as HubDatabase, targets: new Map(), delivery, log: createLogger({ level: 'silent' }), random });

describe('webhook retry schedule', () => {
  it('doubles from firstRetrySeconds, jittered within the upper half, and stops growing at maxRetrySeconds', () => {
    const low = deliverer(() => 0);
    const high = deliverer(() => 0.999_999);
    expect([1, 2, 3, 4].map((n) => low.retryDelayMs(n, undefined))).toEqual([2500, 5000, 10_000, 20_000]);
    expect([1, 2, 3, 4].map((n) => Math.round(high.retryDelayMs(n, undefined) / 1000))).toEqual([5, 10, 20, 40]);
    expect(high.retryDelayMs(30, undefined)).toBeGreaterThan(899_000);
    expect(high.retryDelayMs(30, undefined)).toBeLessThanOrEqual(900_000);
  });

  it('waits at least what Retry-After asks, but never beyond maxRetrySeconds', () => {
    const low = deliverer(() => 0);
    expect(low.retryDelayMs(1, 60_000)).toBe(60_000);
    expect(low.retryDelayMs(1, 86_400_000)).toBe(900_000);
  });

  it('reads Retry-After as seconds or as an HTTP date, and ignores anything else', () => {
    const now = Date.UTC(2026, 10, 30, 8, 0, 0);
    expect(retryAfter('120', now)).toBe(120_000);
    expect(retryAfter(new Date(now + 30_000).toUTCString(), now)).toBe(30_000);
    expect(retryAfter(new Date(now - 30_000).toUTCString(), now)).toBe(0);
    expect(retryAfter('soon', now)).toBeUndefined();
    expect(retryAfter(null, now)).toBeUndefined();
  });

  it('signs the exact body: HMAC-SHA256 hex, prefixed sha256=', () => {
    // RFC 4231 test case 2.
    expect(signatureOf('what do ya want for nothing?', Buffer.from('Jefe'))).toBe(
      'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
  });
});
