import { z } from 'zod';

/**
 * The classes of report the outbox keeps apart, cheapest first: the order in which records are shed when it must
 * make room. Each has its own budget (limits.outbox) and its own counts in every status (outbox depth and drops).
 */
export const OUTBOX_CLASSES = ['status', 'event', 'result'] as const;
export type OutboxClass = (typeof OUTBOX_CLASSES)[number];

/** An object with one `value` per outbox class, e.g. how many records of each wait. */
export function perOutboxClass<T extends z.ZodType>(value: T): z.ZodObject<Record<OutboxClass, T>> {
  return z.object(Object.fromEntries(OUTBOX_CLASSES.map((cls) => [cls, value])) as Record<OutboxClass, T>);
}
