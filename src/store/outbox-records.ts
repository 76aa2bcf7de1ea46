import { randomUUID } from 'node:crypto';
import {
  DROPS_FIELD,
  MESSAGE_ID_FIELD,
  OUTBOX_CLASSES,
  OutboxRecordInvalidError,
  OutboxRecordTooLargeError,
  type NewOutboxRecord,
  type OutboxRecord,
  type OutgoingRecord,
  type QueuedRecord,
} from './outbox.js';

/** What both outbox implementations store for one record, built and checked in one place. */
export interface PreparedRecord {
  record: OutboxRecord;
  queued: QueuedRecord;
  /** Counted against the budgets: payload plus topic, in UTF-8 bytes. */
  bytes: number;
}

export interface DropReport {
  status: number;
  event: number;
  result: number;
  diskFull: number;
}

const MAX_TOPIC_BYTES = 1024;

export function prepareRecord(
  input: NewOutboxRecord,
  context: { seq: number; messageId: string; createdAt: number; maxRecordBytes: number; drops?: DropReport },
): PreparedRecord {
  checkShape(input);
  const payload: Record<string, unknown> = { ...input.payload };
  if (context.drops) payload[DROPS_FIELD] = context.drops;
  payload[MESSAGE_ID_FIELD] = context.messageId;
  let body: string;
  try {
    body = JSON.stringify(payload);
  } catch (err) {
    throw new OutboxRecordInvalidError(`outbox payload for ${input.topic} is not serializable: ${String(err)}`, { cause: err });
  }
  const bytes = Buffer.byteLength(body) + Buffer.byteLength(input.topic);
  if (bytes > context.maxRecordBytes) {
    throw new OutboxRecordTooLargeError(
      `outbox record for ${input.topic} has ${bytes} bytes, more than the limit of ${context.maxRecordBytes}`,
    );
  }
  const common = {
    seq: context.seq,
    messageId: context.messageId,
    class: input.class,
    topic: input.topic,
    qos: input.qos ?? 1,
    retain: input.retain ?? false,
    createdAt: context.createdAt,
  };
  return { record: { ...common, payload }, queued: { ...common, body }, bytes };
}

/** Producers are code, not the network, but a bad topic or class would poison the drain forever: refuse it here. */
function checkShape(input: NewOutboxRecord): void {
  if (!OUTBOX_CLASSES.includes(input.class)) throw new OutboxRecordInvalidError(`unknown outbox class ${String(input.class)}`);
  const topic = input.topic;
  if (typeof topic !== 'string' || topic === '' || /[+#\0]/.test(topic) || Buffer.byteLength(topic) > MAX_TOPIC_BYTES) {
    throw new OutboxRecordInvalidError(`invalid outbox topic ${JSON.stringify(String(topic).slice(0, 100))}`);
  }
  if (input.qos !== undefined && input.qos !== 0 && input.qos !== 1) {
    throw new OutboxRecordInvalidError(`outbox qos must be 0 or 1, not ${String(input.qos)}`);
  }
  const payload: unknown = input.payload;
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new OutboxRecordInvalidError(`outbox payload for ${topic} must be a JSON object`);
  }
}

/**
 * The body of a backlog record: the stored JSON with `historical: true` added, without parsing it. Every stored body
 * is JSON.stringify of an object with at least `messageId` (prepareRecord), so it ends with '}' and the new member
 * needs a leading comma; producers never set `historical` themselves (it is the drain's to set).
 */
export function markHistorical(body: string): string {
  return `${body.slice(0, -1)},"historical":true}`;
}

/** A queued record as the drain publishes it. */
export function toOutgoingRecord(queued: QueuedRecord, historicalUpTo: number): OutgoingRecord {
  const payload = queued.seq <= historicalUpTo ? markHistorical(queued.body) : queued.body;
  return { seq: queued.seq, topic: queued.topic, payload, qos: queued.qos, retain: queued.retain };
}

/** What enqueue returns for a record that could not be stored (disk full): seq 0, counted as dropped. */
export function unstored(input: NewOutboxRecord, createdAt: number): OutboxRecord {
  return {
    seq: 0,
    messageId: randomUUID(),
    class: input.class,
    topic: input.topic,
    payload: input.payload,
    qos: input.qos ?? 1,
    retain: input.retain ?? false,
    createdAt,
  };
}
