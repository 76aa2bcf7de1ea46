import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from '../../lib/logger.js';
import type { Topics } from '../../protocol/topics.js';
import type { CommandPublisher } from './rollout-engine.js';
import { brokerEndpoint } from '../../protocol/broker-url.js';

/**
 * The rollout engine's own MQTT connection: it only publishes the envelopes operators signed, QoS 1, to each
 * device's command topic, with the hub's broker credentials (hubBrokerOptions). It reconnects by itself; while it
 * is down the engine releases nothing.
 */
const PUBLISH_TIMEOUT_MS = 30_000;

export class MqttCommandPublisher implements CommandPublisher {
  private readonly client: MqttClient;

  constructor(brokerUrl: string, base: IClientOptions, clientId: string, private readonly topics: Topics, log: Logger) {
    this.client = mqtt.connect({ ...brokerEndpoint(brokerUrl), ...base, clientId, clean: true, protocolVersion: 5, reconnectPeriod: 1000, connectTimeout: 10_000 });
    this.client.on('connect', () => log.info({ clientId }, 'rollout publisher connected to the broker'));
    this.client.on('error', (err) => log.warn({ clientId, err: err.message }, 'rollout publisher connection error'));
  }

  get connected(): boolean {
    return this.client.connected;
  }

  async publish(deviceId: string, envelopeJson: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no PUBACK within ${PUBLISH_TIMEOUT_MS / 1000} s`)), PUBLISH_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.client.publishAsync(this.topics.device(deviceId, 'commands'), envelopeJson, { qos: 1 }), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync(true).catch(() => {});
  }
}
