import type { Logger } from '../lib/logger.js';

export type CommandMessageListener = (topic: string, payload: Buffer) => void;

/**
 * Hands messages on the command topics to whoever registered for them. Only the exact topics the link
 * subscribed to pass, and only payloads within limits.maxMessageBytes: anything else is dropped with a warning
 * before any parsing happens. Verifying and parsing the envelope is the commands part's job.
 */
export class CommandInbox {
  readonly #handlers = new Set<CommandMessageListener>();

  constructor(
    readonly topics: readonly string[],
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  add(handler: CommandMessageListener): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  /**
   * Returns 'stray' for a topic that is not (or no longer) one of ours: a persistent session may still hold the
   * subscription of a group the device has left, and the caller unsubscribes it.
   */
  deliver(topic: string, payload: Buffer): 'delivered' | 'dropped' | 'stray' {
    if (!this.topics.includes(topic)) {
      this.log.warn({ topic }, 'message on a topic the link did not subscribe to; dropped');
      return 'stray';
    }
    if (payload.length > this.maxBytes) {
      this.log.warn({ topic, bytes: payload.length, maxBytes: this.maxBytes }, 'command larger than limits.maxMessageBytes; dropped');
      return 'dropped';
    }
    for (const handler of this.#handlers) {
      try {
        handler(topic, payload);
      } catch (err) {
        this.log.error({ topic, err }, 'command handler failed');
      }
    }
    return 'delivered';
  }
}
