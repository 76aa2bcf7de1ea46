/**
 * The durable queue every report goes through (see DESIGN.md "How data flows"). Draft interface: the
 * store-and-forward work owns it and may extend it; producers rely on `enqueue` only.
 */
export type OutboxClass = 'status' | 'event' | 'result';

export interface NewOutboxRecord {
  class: OutboxClass;
  topic: string;
  /** JSON-serializable payload object. */
  payload: Record<string, unknown>;
  qos?: 0 | 1;
  retain?: boolean;
}

export interface OutboxRecord {
  /** Position in the queue (ordering). */
  seq: number;
  /** Stable id for deduplication downstream; the same on every re-send. */
  messageId: string;
  class: OutboxClass;
  topic: string;
  payload: Record<string, unknown>;
  qos: 0 | 1;
  retain: boolean;
  createdAt: number;
}

export interface Outbox {
  /** Durable when it returns. */
  enqueue(record: NewOutboxRecord): OutboxRecord;
}
