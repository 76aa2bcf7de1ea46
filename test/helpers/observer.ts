import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { waitFor } from './wait.js';

export interface SeenMessage {
  topic: string;
  text: string;
  retain: boolean;
  json: unknown;
}

/** The fleet's side in tests: a plain MQTT client that records what it sees. */
export class Observer {
  readonly messages: SeenMessage[] = [];

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      const text = payload.toString();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      this.messages.push({ topic, text, retain: packet.retain, json });
    });
  }

  static async connect(url: string, topics: string[], options: IClientOptions = {}): Promise<Observer> {
    const client = await connectAsync(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
    const observer = new Observer(client);
    if (topics.length > 0) await client.subscribeAsync(topics, { qos: 1 });
    return observer;
  }

  async waitFor(match: (m: SeenMessage) => boolean, what: string, timeoutMs = 20_000): Promise<SeenMessage> {
    await waitFor(() => this.messages.some(match), what, timeoutMs);
    return this.messages.find(match)!;
  }

  /**
   * The retained message on `topic` now, read on a fresh connection. A marker published after subscribing
   * arrives after every retained message of that subscription, so no arbitrary wait is needed.
   */
  static async retained(url: string, topic: string, options: IClientOptions = {}): Promise<unknown> {
    const marker = `fleetlet/v1/test-marker/${Math.random().toString(36).slice(2)}`;
    const observer = await Observer.connect(url, [topic, marker], options);
    try {
      await observer.client.publishAsync(marker, 'done', { qos: 1 });
      await observer.waitFor((m) => m.topic === marker, 'the marker message');
      return observer.messages.find((m) => m.topic === topic && m.retain)?.json;
    } finally {
      await observer.close();
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
