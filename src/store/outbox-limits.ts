import type { Config } from '../config/schema.js';
import type { OutboxLimits } from './outbox.js';

/** The outbox's limits from the configuration (limits.outbox, and the largest message the broker takes). */
export function outboxLimitsFromConfig(limits: Config['limits']): OutboxLimits {
  const { maxTotalBytes, ...budgets } = limits.outbox;
  return { budgets, maxTotalBytes, maxRecordBytes: limits.maxMessageBytes };
}
