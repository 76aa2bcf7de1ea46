import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from '../../lib/logger.js';
import type { Topics } from '../../protocol/topics.js';
import type { HubMetrics } from '../metrics.js';
import { classifyMessage, INGESTED_CHANNELS } from './classify.js';
import type { GroupCommitter } from './group-commit.js';
import { brokerEndpoint } from '../../protocol/broker-url.js';

/**
 * The hub's MQTT side. `connections` MQTT 5 sessions, each with a stable client id, clean start off and a long
 * session expiry, so the broker queues every report while the hub is down; all of them (and the other replicas'
 * ones) join one shared subscription, so each report goes to exactly one of them. A message is acknowledged only
 * after the commit that stored it (handleMessage calls back then, and MQTT.js sends the PUBACK after the callback):
 * a hub killed at any moment leaves its unacknowledged messages with the broker, which delivers them again.
 *
 * Retained presence and inventory are not delivered on shared subscriptions (MQTT 5 3.8.4), so one more, plain,
 * clean session reads the retained copies when it subscribes; the live messages it also gets are left to the
 * shared subscription.
 */
export interface MqttIngestOptions {
  brokerUrl: string;
  /** Credentials and TLS (hubBrokerOptions). */
  base: IClientOptions;
  topics: Topics;
  replicaId: string;
  shareGroup: string;
  connections: number;
  sessionExpirySeconds: number;
  maxMessageBytes: number;
  committer: GroupCommitter;
  metrics: HubMetrics;
  log: Logger;
}

/** Unacknowledged messages the broker may have in flight to one connection; they are handled one at a time anyway. */
const RECEIVE_MAXIMUM = 64;

export class MqttIngest {
  #clients: MqttClient[] = [];
  #ready: Promise<void>[] = [];
  #stopped = false;

  constructor(private readonly options: MqttIngestOptions) {}

  start(): void {
    const { topics, shareGroup } = this.options;
    const shared = Object.fromEntries(
      INGESTED_CHANNELS.map((channel) => [`$share/${shareGroup}/${topics.allDevices(channel)}`, { qos: 1 as const, rh: 2 }]),
    );
    for (let i = 0; i < this.options.connections; i++) {
      this.#open(`fleetlet-hub-${this.options.replicaId}-${i}`, { clean: false, properties: { sessionExpiryInterval: this.options.sessionExpirySeconds, receiveMaximum: RECEIVE_MAXIMUM } }, shared, false);
    }
    const retained = Object.fromEntries(
      (['presence', 'inventory'] as const).map((channel) => [topics.allDevices(channel), { qos: 1 as const, rh: 0 }]),
    );
    this.#open(`fleetlet-hub-${this.options.replicaId}-retained`, { clean: true, properties: { receiveMaximum: RECEIVE_MAXIMUM } }, retained, true);
  }

  /** Resolves once every connection has connected and subscribed once. */
  ready(): Promise<void> {
    return Promise.all(this.#ready).then(() => undefined);
  }

  /** Closes every connection without acknowledging what is not committed; call after the committer stopped. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#clients.map((client) => client.endAsync(true).catch(() => {})));
    this.#clients = [];
  }

  #open(clientId: string, session: IClientOptions, subscriptions: Record<string, { qos: 1; rh: number }>, retainedOnly: boolean): void {
    let firstConnect: () => void = () => {};
    this.#ready.push(new Promise<void>((resolve) => (firstConnect = resolve)));
    const connectOnce = () => {
      if (this.#stopped) return;
      const client = this.#connect(clientId, session, subscriptions, retainedOnly, firstConnect, () => {
        // A fresh client for every connection: MQTT.js would otherwise carry the held acknowledgements of the lost
        // connection into the new one. What they acknowledged comes again and is recognised by its messageId.
        this.#clients = this.#clients.filter((c) => c !== client);
        client.end(true);
        // Back quickly: mosquitto (2.0) restored from persistence drops what is published to a shared subscription
        // until its member subscribes again, so the hub should be back before the devices are.
        setTimeout(connectOnce, 100 + Math.floor(Math.random() * 200)).unref();
      });
      this.#clients.push(client);
    };
    connectOnce();
  }

  #connect(
    clientId: string,
    session: IClientOptions,
    subscriptions: Record<string, { qos: 1; rh: number }>,
    retainedOnly: boolean,
    subscribed: () => void,
    lost: () => void,
  ): MqttClient {
    const { log, metrics } = this.options;
    const client = mqtt.connect({
      ...brokerEndpoint(this.options.brokerUrl),
      ...this.options.base,
      ...session,
      clientId,
      protocolVersion: 5,
      resubscribe: false,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    client.handleMessage = (packet: IPublishPacket, callback: (error?: Error) => void) => {
      // The reader of retained copies skips live messages: the shared subscription delivers those.
      if (retainedOnly && !packet.retain) return callback();
      metrics.received += 1;
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : Buffer.from(packet.payload);
      const item = classifyMessage(this.options, { topic: packet.topic, payload, retain: packet.retain === true }, Date.now());
      if (item.channel === 'ignored') return callback();
      void this.options.committer.submit(item).then(() => {
        if (client.connected) callback();
      });
    };
    let connected = false;
    client.on('connect', (connack) => {
      connected = true;
      metrics.connectionsUp += 1;
      log.info({ clientId, sessionPresent: connack.sessionPresent }, 'hub connected to the broker');
      // A present session already holds the subscriptions, and its queued messages come first: MQTT.js reads the
      // SUBACK only after them, so waiting for it would wait for the whole backlog.
      if (connack.sessionPresent) subscribed();
      // Subscribing again on a present session changes nothing; rh 2 keeps the broker from replaying retained copies.
      client.subscribe(subscriptions, (err, granted) => {
        const refused = granted?.filter((g) => g.qos > 2) ?? [];
        if (err || refused.length > 0) log.error({ clientId, err, refused }, 'the broker refused the hub subscription');
        else subscribed();
      });
    });
    let gone = false;
    const onGone = () => {
      if (gone) return;
      gone = true;
      if (connected) {
        metrics.connectionsUp -= 1;
        log.warn({ clientId }, 'hub lost its broker connection; reconnecting (unacknowledged messages stay with the broker)');
      }
      if (!this.#stopped) lost();
    };
    client.on('close', onGone);
    client.on('error', (err) => {
      log.warn({ clientId, err: err.message }, 'hub broker connection error');
      onGone();
    });
    return client;
  }
}
