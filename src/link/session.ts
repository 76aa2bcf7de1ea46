import type { MqttClient } from 'mqtt';
import type { Publisher } from './drain.js';

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
   * One promise and one callback per publish, not the four promises of track(publishAsync) (and more as they
   * settle): a drain keeps a window of them waiting for PUBACKs, long enough for V8 to move them to its old space as
   * garbage to collect later.
   */
  publish(topic: string, payload: string, options: { qos: 0 | 1; retain: boolean }): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error('connection closed'));
    return new Promise<void>((resolve, reject) => {
      this.#pending.add(reject);
      this.client.publish(topic, payload, options, (err) => {
        this.#pending.delete(reject);
        if (err) reject(err);
        else resolve();
      });
    });
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
