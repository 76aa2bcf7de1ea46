import { fullJitterDelay } from '../../lib/backoff.js';
import type { IngestItem } from './classify.js';
import type { CommitOutcome } from './commit-batch.js';

/**
 * Gathers the messages the hub's connections hold (each connection holds at most one: MQTT.js reads its next
 * packet only after the PUBACK of the current one) into one commit, one commit at a time. A batch goes at once
 * when no commit runs (maxWaitMs 0), as soon as every writer has a message waiting (no other can arrive), when it
 * is full, or after maxWaitMs; what arrives during a commit goes together in the next.
 *
 * A commit that fails is retried with backoff; a batch that keeps failing is split, and a single message that
 * keeps failing is kept aside as rejected, so one poisonous message cannot stall ingest. While the database is
 * unreachable nothing is acknowledged and the broker keeps the messages.
 */
export interface GroupCommitOptions {
  commit(items: IngestItem[]): Promise<CommitOutcome>;
  maxMessages: number;
  maxWaitMs: number;
  /** How many writers may hold a message at once (the connections). */
  writers: () => number;
  onCommitted?(outcome: CommitOutcome, items: readonly IngestItem[], durationMs: number): void;
  onFailure?(err: unknown, batchSize: number, attempt: number): void;
  retry?: { baseMs: number; capMs: number };
}

interface Pending {
  item: IngestItem;
  resolve: () => void;
}

const ATTEMPTS_BEFORE_SPLIT = 3;

export class GroupCommitter {
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #committing: Promise<void> | undefined;
  #stopped = false;

  constructor(private readonly options: GroupCommitOptions) {}

  /** Resolves once the item is committed; never rejects (after stop() it simply never resolves). */
  submit(item: IngestItem): Promise<void> {
    return new Promise((resolve) => {
      if (this.#stopped) return;
      this.#pending.push({ item, resolve });
      this.#schedule();
    });
  }

  get waiting(): number {
    return this.#pending.length;
  }

  /** Takes no more batches; resolves once the commit in progress (if any) ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#committing;
  }

  #schedule(): void {
    if (this.#committing || this.#stopped || this.#pending.length === 0) return;
    const full = this.#pending.length >= this.options.maxMessages || this.#pending.length >= this.options.writers();
    if (full || this.options.maxWaitMs === 0) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#flush();
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        this.#flush();
      }, this.options.maxWaitMs);
    }
  }

  #flush(): void {
    if (this.#committing || this.#stopped) return;
    const batch = this.#pending.splice(0, this.options.maxMessages);
    this.#committing = this.#commitWithRetry(batch).finally(() => {
      this.#committing = undefined;
      this.#schedule();
    });
  }

  async #commitWithRetry(batch: Pending[]): Promise<void> {
    for (let attempt = 0; !this.#stopped; attempt++) {
      if (batch.length > 1 && attempt === ATTEMPTS_BEFORE_SPLIT) {
        for (const single of batch) await this.#commitWithRetry([single]);
        return;
      }
      const items = batch.map((p) => p.item);
      // A single message that failed alone too often, while the database itself answers, is kept aside instead.
      const poisoned = batch.length === 1 && attempt >= ATTEMPTS_BEFORE_SPLIT && (await this.#databaseAnswers());
      const started = performance.now();
      try {
        const outcome = await this.options.commit(poisoned ? [asRejected(items[0]!, this.#lastError)] : items);
        this.options.onCommitted?.(outcome, items, performance.now() - started);
        for (const p of batch) p.resolve();
        return;
      } catch (err) {
        this.#lastError = err;
        this.options.onFailure?.(err, batch.length, attempt);
        await sleep(fullJitterDelay(attempt, this.options.retry ?? { baseMs: 100, capMs: 5000 }) + 10);
      }
    }
  }

  #lastError: unknown;

  async #databaseAnswers(): Promise<boolean> {
    try {
      await this.options.commit([]);
      return true;
    } catch {
      return false;
    }
  }
}

function asRejected(item: IngestItem, err: unknown): IngestItem {
  if (item.channel === 'rejected' || item.channel === 'ignored') return item;
  const reason = `could not be stored: ${err instanceof Error ? err.message : String(err)}`;
  const payload = Buffer.from(JSON.stringify({ channel: item.channel, ...('messageId' in item ? { messageId: item.messageId } : {}) }));
  return { channel: 'rejected', topic: `(${item.channel} of ${item.deviceId})`, deviceId: item.deviceId, reason, receivedAtMs: item.receivedAtMs, payload };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
