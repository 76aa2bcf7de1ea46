import type { Logger } from '../lib/logger.js';
import type { OutboxStore, OutgoingRecord, Unsubscribe } from '../store/outbox.js';

/**
 * The windowed drain of the outbox to the broker, for any MQTT client.
 *
 * How the link uses it:
 *   const drainer = new Drainer(outbox, { window: config.broker.inflightWindow, logger });
 *   on connect, after publishing presence:  drainer.onConnect(publisherOf(client));
 *   on close/offline:                       drainer.onDisconnect();
 *   at shutdown:                            drainer.stop();
 *
 * On each connect it publishes the newest status first (as it is), then the backlog oldest first with
 * `historical: true` (records enqueued before this connection came up); records enqueued since (woken by the outbox,
 * no polling) go out ahead of whatever is left of the backlog, so a command's result never waits behind it. At most
 * `window` publishes await their PUBACK at once: MQTT packet ids wrap at 65,535 and a window of 100-1000 is the
 * fastest. A record is deleted only after its PUBACK; whatever is unacked at
 * a disconnect stays queued and is sent again on the next connect with the same messageId (at-least-once).
 */
export interface Publisher {
  /**
   * Calls `done` once: without an error when the broker acknowledged the message (QoS 1 PUBACK), with one when it
   * never will on this connection. A callback, not a promise: the drain makes this call for every record, and the
   * promises per record cost measurable CPU (docs/benchmarks.md, "Drain of a 100,000-record backlog").
   */
  send(topic: string, payload: string, options: PublishOptions, done: (err?: Error) => void): void;
}

export interface PublishOptions {
  qos: 0 | 1;
  retain: boolean;
}

/** The part of the outbox the drainer needs. */
export type DrainSource = Pick<OutboxStore, 'outgoing' | 'latest' | 'lastSeq' | 'acknowledge' | 'onEnqueue'>;

export interface DrainOptions {
  /** Most publishes awaiting a PUBACK at once (QoS 1 window). */
  window: number;
  logger?: Logger;
}

export interface DrainCounters {
  published: number;
  acknowledged: number;
  inFlight: number;
}

/** Adapts an MQTT.js client to a Publisher. */
export function publisherOf(client: {
  publish(topic: string, message: string, options: PublishOptions, callback: (err?: Error) => void): unknown;
}): Publisher {
  return { send: (topic, payload, options, done) => void client.publish(topic, payload, options, (err) => done(err ?? undefined)) };
}

/** One options object per combination, by qos then retain, instead of one per publish. */
const PUBLISH_OPTIONS: Record<0 | 1, [PublishOptions, PublishOptions]> = {
  0: [{ qos: 0, retain: false }, { qos: 0, retain: true }],
  1: [{ qos: 1, retain: false }, { qos: 1, retain: true }],
};

/** Records read from the outbox at a time, at least (a small window would otherwise mean many small queries). */
const READ_AHEAD_MIN = 100;
const ACK_FLUSH_DELAY_MS = 10;

export class Drainer {
  private session: DrainSession | undefined;
  private acked: number[] = [];
  private ackFlushScheduled = false;
  readonly counters: DrainCounters = { published: 0, acknowledged: 0, inFlight: 0 };

  constructor(
    private readonly outbox: DrainSource,
    private readonly options: DrainOptions,
  ) {
    if (!Number.isInteger(options.window) || options.window < 1) throw new RangeError('drain window must be >= 1');
  }

  onConnect(publisher: Publisher): void {
    this.session?.end();
    this.session = new DrainSession(this.outbox, publisher, this.options, this);
    this.session.start();
  }

  onDisconnect(): void {
    this.session?.end();
    this.session = undefined;
  }

  stop(): void {
    this.onDisconnect();
    this.flushAcks();
  }

  /** Called when the broker acknowledged a record (also from a session that has ended: the ack is still true). */
  acknowledged(seq: number): void {
    this.acked.push(seq);
    if (this.ackFlushScheduled) return;
    this.ackFlushScheduled = true;
    // Deletes are batched: one transaction per few milliseconds of PUBACKs rather than per PUBACK (a crash in
    // between only means those records are sent again, with the same ids).
    setTimeout(() => this.flushAcks(), ACK_FLUSH_DELAY_MS);
  }

  private flushAcks(): void {
    this.ackFlushScheduled = false;
    if (this.acked.length === 0) return;
    const seqs = this.acked;
    this.acked = [];
    try {
      this.outbox.acknowledge(seqs);
      this.counters.acknowledged += seqs.length;
    } catch (err) {
      // They stay queued and go out again on the next connect, with the same ids: a duplicate, not a loss.
      this.options.logger?.warn({ err, records: seqs.length }, 'drain: could not delete acknowledged records');
    }
  }
}

/** Records read from the outbox and not yet published, with the highest seq read so far. */
class ReadAhead {
  records: OutgoingRecord[] = [];
  index = 0;
  constructor(public cursor: number) {}

  next(): OutgoingRecord | undefined {
    return this.index < this.records.length ? this.records[this.index++] : undefined;
  }

  refill(records: OutgoingRecord[]): void {
    this.records = records;
    this.index = 0;
    if (records.length > 0) this.cursor = records.at(-1)!.seq;
  }
}

class DrainSession {
  /** Records up to this seq were queued before the connection came up: the backlog. */
  private readonly backlogEnd: number;
  private readonly backlog: ReadAhead;
  /** Records enqueued since the connection came up. They go before the rest of the backlog (see `nextRecord`). */
  private readonly live: ReadAhead;
  private backlogDone = false;
  /** Something was enqueued that `live` may not have read yet (set on every notification from the outbox). */
  private liveWaiting = true;
  private sentFirst: number | undefined;
  private inFlight = 0;
  private ended = false;
  private pumpScheduled = false;
  private refillQueued = false;
  private pumping = false;
  private unsubscribe: Unsubscribe | undefined;

  constructor(
    private readonly outbox: DrainSource,
    private readonly publisher: Publisher,
    private readonly options: DrainOptions,
    private readonly drainer: Drainer,
  ) {
    this.backlogEnd = outbox.lastSeq();
    this.backlog = new ReadAhead(0);
    this.live = new ReadAhead(this.backlogEnd);
  }

  start(): void {
    this.unsubscribe = this.outbox.onEnqueue(() => {
      this.liveWaiting = true;
      this.schedulePump();
    });
    const newestStatus = this.outbox.latest('status');
    if (newestStatus) {
      this.sentFirst = newestStatus.seq;
      this.send(newestStatus.seq, newestStatus.topic, newestStatus.body, newestStatus);
    }
    this.pump();
  }

  end(): void {
    this.ended = true;
    this.backlog.refill([]);
    this.live.refill([]);
    this.unsubscribe?.();
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.ended) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /**
   * Tops the window up from a read-ahead buffer: a publish goes out as soon as a PUBACK frees a slot (the broker
   * takes a steady stream faster than bursts), while the outbox is read a batch at a time.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.ended && this.inFlight < this.options.window) {
        const record = this.nextRecord();
        if (!record) return;
        if (record.seq === this.sentFirst) continue;
        this.send(record.seq, record.topic, record.payload, record);
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * New records first, then the backlog: a command's result or an event enqueued during a drain of days of backlog
   * goes out with the next free slot of the window, not after the last historical record (docs/benchmarks.md,
   * "The agent while it drains"). Each part stays in seq order.
   */
  private nextRecord(): OutgoingRecord | undefined {
    const limit = Math.max(this.options.window, READ_AHEAD_MIN);
    let record = this.live.next();
    if (!record && this.liveWaiting) {
      if (!this.read(this.live, limit)) return undefined;
      // A full read may have left more behind it; otherwise the next enqueue's notification sets this again.
      this.liveWaiting = this.live.records.length >= limit;
      record = this.live.next();
    }
    if (record || this.backlogDone) return record;
    record = this.backlog.next();
    if (record) return record;
    if (!this.read(this.backlog, limit)) return undefined;
    // The read may reach past the backlog: those records are `live`'s to send.
    const backlogPart = this.backlog.records.filter((r) => r.seq <= this.backlogEnd);
    if (backlogPart.length < this.backlog.records.length) this.backlog.records = backlogPart;
    if (backlogPart.length === 0) this.backlogDone = true;
    return this.backlog.next();
  }

  /** Reads the next records after `from`'s cursor into it; false when the outbox could not be read (the session ends). */
  private read(from: ReadAhead, limit: number): boolean {
    try {
      // The backlog comes with `historical: true` already added by the outbox (without a parse).
      from.refill(this.outbox.outgoing(from.cursor, limit, this.backlogEnd));
      return true;
    } catch (err) {
      this.options.logger?.error({ err }, 'drain: could not read the outbox; waiting for the next connect');
      this.end();
      return false;
    }
  }

  private send(seq: number, topic: string, payload: string, options: PublishOptions): void {
    this.inFlight += 1;
    this.drainer.counters.inFlight += 1;
    this.drainer.counters.published += 1;
    this.publisher.send(topic, payload, PUBLISH_OPTIONS[options.qos][options.retain ? 1 : 0], (err) => {
      if (err) this.failed(err, topic);
      this.settle();
      if (!err) this.drainer.acknowledged(seq);
    });
  }

  private failed(err: Error, topic: string): void {
    if (this.ended) return;
    // Usually the connection is going away; the record stays queued and the next connect sends it again.
    this.options.logger?.warn({ err, topic }, 'drain: publish failed; pausing until the next connect');
    this.end();
  }

  private settle(): void {
    this.inFlight -= 1;
    this.drainer.counters.inFlight -= 1;
    // After the PUBACKs that arrived together, not inside MQTT.js's handling of each: the publishes then go out
    // together (one socket write for many).
    if (this.refillQueued) return;
    this.refillQueued = true;
    queueMicrotask(() => {
      this.refillQueued = false;
      this.pump();
    });
  }
}
