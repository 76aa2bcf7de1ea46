import { FleetletError } from '../lib/errors.js';
import type { OutboxClass } from '../protocol/outbox-classes.js';

/**
 * The durable queue every report goes through (see DESIGN.md "How data flows"). Producers get an `Outbox`
 * (just `enqueue`). The full `OutboxStore` adds `enqueueMany` for bursts, and what the link's drainer uses:
 * `pending`/`latest` to read, `acknowledge` to delete once the broker sent its PUBACK. Two implementations share
 * one contract suite: SqliteOutbox (the product) and MemoryOutbox (for tests of other parts).
 *
 * On the wire every record's JSON carries `messageId`, for deduplication downstream: a random UUID made at enqueue
 * and stored with the record, so every re-send carries the same one. Random rather than device prefix + counter:
 * it needs no state that could repeat (a database moved aside, a golden image restored on many devices).
 * Once anything was dropped, every status carries `outboxDrops`: how many records of each class were dropped and
 * how often the disk was full, counted since the state database was created. They are counters (the fleet takes
 * differences), so a status that is itself dropped loses no count.
 */

// Cheapest first: the order in which records are shed when the outbox must make room. The status message counts them too.
export { OUTBOX_CLASSES, type OutboxClass } from '../protocol/outbox-classes.js';

export interface NewOutboxRecord {
  class: OutboxClass;
  topic: string;
  /** JSON-serializable payload object. `messageId` and `outboxDrops` are set by the outbox. */
  payload: Record<string, unknown>;
  qos?: 0 | 1;
  retain?: boolean;
}

export interface OutboxRecord {
  /** Position in the queue (ordering); 0 when the record could not be stored (disk full) and was counted as dropped. */
  seq: number;
  /** Stable id for deduplication downstream; the same on every re-send. */
  messageId: string;
  class: OutboxClass;
  topic: string;
  /** The payload as published (with `messageId`, and `outboxDrops` when the outbox added it). */
  payload: Record<string, unknown>;
  qos: 0 | 1;
  retain: boolean;
  createdAt: number;
}

/** A record as the drainer sees it: `body` is the JSON text to publish, so draining needs no parse. */
export interface QueuedRecord {
  seq: number;
  messageId: string;
  class: OutboxClass;
  topic: string;
  body: string;
  qos: 0 | 1;
  retain: boolean;
  createdAt: number;
}

/**
 * A record as the drain publishes it: the JSON text on the wire, with `historical: true` already added to a backlog
 * record, and only the fields the drain sends (reading fewer columns per record is measurably cheaper).
 */
export interface OutgoingRecord {
  seq: number;
  topic: string;
  payload: string;
  qos: 0 | 1;
  retain: boolean;
}

export interface ClassBudget {
  maxRows: number;
  maxBytes: number;
}

export interface OutboxLimits {
  budgets: Record<OutboxClass, ClassBudget>;
  /** Over this, records are shed cheapest class first (status, then event, then result). */
  maxTotalBytes: number;
  /** A record larger than this is refused (the broker would refuse it too). */
  maxRecordBytes: number;
}

export type ClassCounts = Record<OutboxClass, number>;

export interface OutboxStats {
  rows: ClassCounts;
  bytes: ClassCounts;
  /** Records dropped (budgets, disk full), counted since the state database was created. */
  dropped: ClassCounts;
  /** Times a write failed for lack of space, counted since the state database was created. */
  diskFull: number;
  /** When the last disk-full happened (ms since epoch), for health checks; undefined if never in this process. */
  diskFullAt: number | undefined;
}

export type Unsubscribe = () => void;

/** What producers need (and all they may rely on): a record handed over is the outbox's to deliver. */
export interface Outbox {
  /** Durable when it returns (see SqliteOutbox for what durable means per class). */
  enqueue(record: NewOutboxRecord): OutboxRecord;
}

/** The whole outbox: what the composition root builds and the drainer reads. */
export interface OutboxStore extends Outbox {
  /** Many records in one transaction: one commit instead of one per record. */
  enqueueMany(records: readonly NewOutboxRecord[]): OutboxRecord[];
  /** Up to `limit` records with seq > afterSeq, oldest first. */
  pending(afterSeq: number, limit: number): QueuedRecord[];
  /** What `pending` gives, as the drain publishes it: records with seq <= historicalUpTo carry `historical: true`. */
  outgoing(afterSeq: number, limit: number, historicalUpTo: number): OutgoingRecord[];
  /** The newest record of a class, if any. */
  latest(cls: OutboxClass): QueuedRecord | undefined;
  /** The highest seq handed out so far (0 when none). */
  lastSeq(): number;
  /** Deletes records the broker acknowledged; unknown seqs are ignored. Returns how many were deleted. */
  acknowledge(seqs: readonly number[]): number;
  stats(): OutboxStats;
  /** Called (asynchronously, once per burst) after records were enqueued, so a drainer needs no polling. */
  onEnqueue(listener: () => void): Unsubscribe;
}

/** Wire fields the outbox owns inside every payload. */
export const MESSAGE_ID_FIELD = 'messageId';
export const DROPS_FIELD = 'outboxDrops';

export class OutboxRecordTooLargeError extends FleetletError {
  readonly severity = 'fatal';
}

export class OutboxRecordInvalidError extends FleetletError {
  readonly severity = 'fatal';
}

export function zeroCounts(): ClassCounts {
  return { status: 0, event: 0, result: 0 };
}
