import type { MqttClient } from 'mqtt';
import type { PublishOptions, Publisher } from './drain.js';

/**
 * One connection's work in flight. Whatever is still unacknowledged when the connection closes fails then:
 * with a persistent session MQTT.js keeps QoS 1 and SUBSCRIBE callbacks waiting for a resend on the same client,
 * which never comes here (each attempt is a new client), so the drain would otherwise wait forever for its records.
 */
export class LinkSession implements Publisher {
  readonly #pending = new Set<(err: Error) => void>();
  #closed = false;

  constructor(readonly client: MqttClient) {}

  get open(): boolean {
    return !this.#closed && this.client.connected;
  }

  /**
   * One promise per publish, on top of send(): not the four promises of track(publishAsync) (and more as they
   * settle), which a window of publishes waiting for PUBACKs would hold long enough for V8 to promote them.
   */
  publish(topic: string, payload: string, options: PublishOptions): Promise<void> {
    return new Promise<void>((resolve, reject) => this.send(topic, payload, options, (err) => (err ? reject(err) : resolve())));
  }

  /** The drain's publish: `done` is called once, at the PUBACK or at the latest when the connection closes. */
  send(topic: string, payload: string, options: PublishOptions, done: (err?: Error) => void): void {
    if (this.#closed) return done(new Error('connection closed'));
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      this.#pending.delete(settle);
      done(err);
    };
    this.#pending.add(settle);
    this.client.publish(topic, payload, options, (err) => settle(err ?? undefined));
  }

  /** Runs `work` on this connection; the result rejects at the latest when the connection closes. */
  track<T>(work: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error('connection closed'));
    return new Promise<T>((resolve, reject) => {
      this.#pending.add(reject);
      work()
        .then(resolve, reject)
        .finally(() => this.#pending.delete(reject));
    });
  }

  close(): void {
    this.#closed = true;
    const error = new Error('connection closed before the broker acknowledged');
    for (const reject of this.#pending) reject(error);
    this.#pending.clear();
  }
}
