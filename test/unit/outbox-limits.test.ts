import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { outboxLimitsFromConfig } from '../../src/store/outbox-limits.js';

const parseLimits = (limits: unknown) =>
  ConfigSchema.parse({ broker: { url: 'mqtt://127.0.0.1:1883', allowPlaintext: true }, limits }).limits;

describe('outbox limits from the configuration', () => {
  it('defaults to budgets that fit a small SD card, status cheapest', () => {
    const limits = outboxLimitsFromConfig(parseLimits(undefined));
    const perClass = Object.values(limits.budgets).reduce((sum, b) => sum + b.maxBytes, 0);
    expect(perClass).toBeLessThanOrEqual(32 * 1024 * 1024);
    expect(limits.maxTotalBytes).toBeLessThan(perClass);
    expect(limits.budgets.status.maxRows).toBeGreaterThanOrEqual(2880); // a day of samples at the default 30 s
    expect(limits.maxRecordBytes).toBe(256 * 1024);
  });

  it('takes every key from limits.outbox and the message size from limits.maxMessageBytes', () => {
    const limits = outboxLimitsFromConfig(
      parseLimits({
        maxMessageBytes: 4096,
        outbox: { status: { maxRows: 100, maxBytes: 2048 }, event: { maxRows: 50 }, maxTotalBytes: 8192 },
      }),
    );
    expect(limits.budgets.status).toEqual({ maxRows: 100, maxBytes: 2048 });
    expect(limits.budgets.event).toEqual({ maxRows: 50, maxBytes: 8 * 1024 * 1024 });
    expect(limits.maxTotalBytes).toBe(8192);
    expect(limits.maxRecordBytes).toBe(4096);
  });

  it('refuses budgets too small to hold anything', () => {
    expect(() => parseLimits({ outbox: { status: { maxRows: 0 } } })).toThrow();
    expect(() => parseLimits({ outbox: { maxTotalBytes: 10 } })).toThrow();
  });
});
