import { connect } from 'mqtt';
import type { Config } from '../config/schema.js';
import { ReconnectSchedule } from '../lib/backoff.js';
import type { Heartbeat } from '../lib/heartbeat.js';
import type { Logger } from '../lib/logger.js';
import type { Inventory } from '../protocol/inventory.js';
import { presenceMessage } from '../protocol/presence.js';
import type { Topics } from '../protocol/topics.js';
import type { ClientCredentials, ClientCredentialSource } from '../identity/client-credentials.js';
import { clientOptions, isCredentialRefusal } from './client-options.js';
import { CommandInbox, type CommandMessageListener } from './command-inbox.js';
import type { Publisher } from './drain.js';
import { LinkSession } from './session.js';
import { errorMessage } from '../lib/errors.js';
import { brokerEndpoint } from '../protocol/broker-url.js';

/** What telemetry shows about the link. */
export interface LinkState {
  connected: boolean;
  /**
   * The broker granted the device's own command topic on the current connection: commands can reach the device. A
   * refused group topic (the device is not a member by the broker's ACL) does not take that away; it is listed in
   * `refusedTopics` and logged.
   */
  subscribed: boolean;
  /** Command topics the broker refused on the current connection (SUBACK 0x80). */
  refusedTopics?: string[];
  /** When the link last became connected or disconnected (epoch ms). */
  since: number;
  /** Connection attempts since the last stable connection. */
  reconnectAttempts: number;
  /** The last connection problem, kept after reconnecting as a hint of what happened. */
  lastError?: string;
}

/** The outbox drain (Drainer in drain.ts): runs while a connection is up, from after the birth message. */
export interface LinkDrain {
  onConnect(publisher: Publisher): void;
  onDisconnect(): void;
  stop(): void;
}

/** The inventory comes from telemetry; the link only publishes it (retained) on connect and when told it changed. */
export type InventoryProvider = () => Inventory | undefined;

export interface LinkOptions {
  broker: Config['broker'];
  /** The agent's one topic scheme, shared with every other part that names a topic. */
  topics: Topics;
  deviceId: string;
  groups: readonly string[];
  maxMessageBytes: number;
  bootSequence: number;
  fleetletVersion: string;
  logger: Logger;
  inventory?: InventoryProvider;
  drain?: LinkDrain;
  /** Bound on the clean stop (offline presence, then DISCONNECT). */
  stopTimeoutMs?: number;
  random?: () => number;
  /**
   * Beaten at every connection attempt, every packet from the broker and every close: the loop is alive while it
   * either hears the broker (at least each keepalive) or keeps trying to reach it (at least each reconnect cap).
   */
  progress?: Heartbeat;
  /** With enrolment: the client certificate comes from here, not from broker.tls.certFile/keyFile. */
  credentials?: ClientCredentialSource;
}

/**
 * The device's one MQTT connection. It never waits for the broker: start() only schedules the first attempt,
 * and every loss of the connection (refused, reset, keepalive timeout on a black-holed link) schedules the next
 * with full-jitter backoff. On each connect it subscribes to the command topics, publishes its retained
 * presence and inventory, then lets the outbox drain until the connection drops.
 */
export class MqttLink {
  readonly name = 'mqtt-link';
  readonly #options: LinkOptions;
  readonly #topics: Topics;
  readonly #schedule: ReconnectSchedule;
  readonly #inbox: CommandInbox;
  readonly #log: Logger;
  #session: LinkSession | undefined;
  #state: LinkState = { connected: false, subscribed: false, since: Date.now(), reconnectAttempts: 0 };
  #stopping = false;
  /** The last problem written to the log: a broker that stays down gives one warning, not one per attempt. */
  #loggedError: string | undefined;
  /** The certificate generation the current session connects with. */
  #sessionCredentials: string | undefined;
  #unsubscribeCredentials: (() => void) | undefined;
  /** The session was ended to reconnect with new credentials: the next attempt goes at once. */
  #reconnectNow = false;

  constructor(options: LinkOptions) {
    this.#options = options;
    this.#topics = options.topics;
    this.#schedule = new ReconnectSchedule(options.broker.reconnect, options.random);
    this.#log = options.logger.child({ part: 'link' });
    const commandTopics = [
      this.#topics.device(options.deviceId, 'commands'),
      ...options.groups.map((group) => this.#topics.groupCommands(group)),
    ];
    this.#inbox = new CommandInbox(commandTopics, options.maxMessageBytes, this.#log);
    // Fail now, not at the first connect, on unreadable TLS files or a certificate for another device.
    this.#clientOptions();
  }

  state(): LinkState {
    return { ...this.#state, reconnectAttempts: this.#schedule.attempts };
  }

  /** Receives every message on the device's and its groups' command topics, payloads already size-checked. */
  onCommand(handler: CommandMessageListener): () => void {
    return this.#inbox.add(handler);
  }

  start(): void {
    this.#stopping = false;
    this.#unsubscribeCredentials = this.#options.credentials?.onChange(() => this.#onCredentialsChanged());
    this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#unsubscribeCredentials?.();
    this.#schedule.cancel();
    // No new reports from here on; PUBACKs still arriving while we say goodbye are recorded by drain.stop() below.
    this.#options.drain?.onDisconnect();
    const session = this.#session;
    this.#session = undefined;
    if (session) {
      await this.#goodbye(session);
      session.close();
    }
    this.#options.drain?.stop();
  }

  async #goodbye(session: LinkSession): Promise<void> {
    const { client } = session;
    const timeoutMs = this.#options.stopTimeoutMs ?? 3000;
    if (session.open) {
      // A clean DISCONNECT discards the last will, so the offline message must be sent by hand first.
      const offline = presenceMessage('offline', this.#options.bootSequence, this.#options.fleetletVersion, 'stopped');
      const sent = await withTimeout(
        session.publish(this.#presenceTopic, JSON.stringify(offline), { qos: 1, retain: true }),
        timeoutMs,
      );
      if (sent !== 'done') this.#log.warn({ outcome: sent }, 'offline presence not acknowledged before stopping');
      if ((await withTimeout(client.endAsync(false), timeoutMs)) === 'done') return;
    }
    client.end(true);
  }

  /** Publishes the inventory again (retained), e.g. after it changed. A no-op while disconnected. */
  async publishInventory(): Promise<void> {
    const session = this.#session;
    const inventory = this.#options.inventory?.();
    if (!session?.open || !inventory) return;
    const payload = JSON.stringify(inventory);
    if (Buffer.byteLength(payload) > this.#options.maxMessageBytes) {
      this.#log.error({ bytes: Buffer.byteLength(payload) }, 'inventory larger than limits.maxMessageBytes; not sent');
      return;
    }
    await session.publish(this.#topics.device(this.#options.deviceId, 'inventory'), payload, { qos: 1, retain: true });
  }

  get #presenceTopic(): string {
    return this.#topics.device(this.#options.deviceId, 'presence');
  }

  /** Built per attempt: the will's timestamp is the time of the connection that carries it. */
  #clientOptions(credentials?: ClientCredentials) {
    const will = presenceMessage('offline', this.#options.bootSequence, this.#options.fleetletVersion, 'connection-lost');
    const { broker } = this.#options;
    // Enrolled credentials replace the files, which may not exist yet.
    const tls = this.#options.credentials ? { ...broker.tls, certFile: undefined, keyFile: undefined } : broker.tls;
    return clientOptions({ ...broker, tls }, this.#options.deviceId, { topic: this.#presenceTopic, payload: JSON.stringify(will) }, credentials);
  }

  /** A new certificate (first enrolment, renewal or rollback): connect with it now, not at the next backoff. */
  #onCredentialsChanged(): void {
    if (this.#stopping) return;
    const next = this.#options.credentials?.current();
    const session = this.#session;
    if (!session) {
      this.#schedule.cancel();
      this.#connect();
      return;
    }
    if (next?.id === this.#sessionCredentials) return;
    this.#log.info('client certificate changed: reconnecting with it');
    this.#reconnectNow = true;
    if (!session.open) {
      session.client.end(true);
      return;
    }
    // A clean DISCONNECT (no last will): the device is back within moments.
    void withTimeout(session.client.endAsync(false), this.#options.stopTimeoutMs ?? 3000).then((outcome) => {
      if (outcome !== 'done') session.client.end(true);
    });
  }

  #connect(): void {
    if (this.#stopping) return;
    this.#options.progress?.beat();
    const credentials = this.#options.credentials?.current();
    if (this.#options.credentials && !credentials) {
      // Not a failure: enrolment calls back when the certificate is issued; reports queue in the outbox meanwhile.
      // Idle, not stuck: an approval may take days, and the watchdog must not restart the agent for it.
      this.#options.progress?.idle();
      this.#recordError(new Error('waiting for a client certificate from enrolment'));
      return;
    }
    this.#sessionCredentials = credentials?.id;
    let options;
    try {
      options = this.#clientOptions(credentials);
    } catch (err) {
      this.#recordError(err);
      this.#retryLater();
      return;
    }
    const client = connect({ ...brokerEndpoint(this.#options.broker.url), ...options });
    const session = new LinkSession(client);
    this.#session = session;
    let accepted = false;
    client.on('connect', () => {
      accepted = true;
      if (credentials) this.#options.credentials?.connected(credentials.id);
      void this.#onConnected(session);
    });
    client.on('packetreceive', () => this.#options.progress?.beat());
    client.on('message', (topic, payload) => {
      if (this.#inbox.deliver(topic, payload) !== 'stray') return;
      client.unsubscribeAsync(topic).then(
        () => this.#log.info({ topic }, 'unsubscribed from a topic left over in the session'),
        (err: unknown) => this.#recordError(err),
      );
    });
    client.on('error', (err) => {
      this.#recordError(err);
      if (credentials && !accepted && isCredentialRefusal(err)) this.#options.credentials?.refused(credentials.id, err.message);
      // Stream and protocol errors leave the session in an unknown state (MQTT.js keeps reading after a parse
      // error): drop it, and let the close handler schedule a fresh connection.
      if (session === this.#session) client.end(true);
    });
    client.on('close', () => this.#onClosed(session));
  }

  async #onConnected(session: LinkSession): Promise<void> {
    this.#schedule.connected();
    this.#state = { ...this.#state, connected: true, since: Date.now() };
    this.#loggedError = undefined;
    this.#log.info({ broker: brokerAddress(this.#options.broker.url) }, 'connected to the broker');
    const current = () => session === this.#session && session.open && !this.#stopping;
    try {
      // Subscribe before announcing ourselves: an operator reacting to the birth must not miss us.
      const refused = await this.#subscribeCommands(session);
      if (refused.length > 0) {
        this.#log.error({ topics: refused }, "the broker refused command subscriptions: check its ACL and the fleet's group membership list");
      }
      if (!current()) return;
      const ownTopic = this.#topics.device(this.#options.deviceId, 'commands');
      this.#state = { ...this.#state, subscribed: !refused.includes(ownTopic), refusedTopics: refused };
      const online = presenceMessage('online', this.#options.bootSequence, this.#options.fleetletVersion);
      await session.publish(this.#presenceTopic, JSON.stringify(online), { qos: 1, retain: true });
      if (!current()) return;
      await this.publishInventory();
      if (!current()) return;
      this.#log.info({ bootSequence: this.#options.bootSequence }, 'online: subscribed to commands and announced');
      this.#options.drain?.onConnect(session);
    } catch (err) {
      // The connection dropped half-way; the close handler schedules the next attempt.
      this.#recordError(err);
    }
  }

  /**
   * Subscribes to every command topic in one SUBSCRIBE and returns those the broker refused. MQTT.js rejects the whole
   * call when any topic is refused (0x80), which would otherwise hide that the others were granted.
   */
  async #subscribeCommands(session: LinkSession): Promise<string[]> {
    const topics = [...this.#inbox.topics];
    let codes: readonly unknown[];
    try {
      codes = (await session.track(() => session.client.subscribeAsync(topics, { qos: 1 }))).map((grant) => grant.qos);
    } catch (err) {
      const suback = subackOf(err);
      if (!suback) throw err;
      codes = suback;
    }
    return topics.filter((_topic, index) => typeof codes[index] !== 'number' || ((codes[index] as number) & 0x80) !== 0);
  }

  #onClosed(session: LinkSession): void {
    if (session !== this.#session) return;
    this.#options.progress?.beat();
    this.#session = undefined;
    session.client.removeAllListeners('connect');
    session.client.end(true);
    if (this.#state.connected) {
      this.#log.warn({ error: this.#loggedError }, 'disconnected from the broker');
      this.#options.drain?.onDisconnect();
    }
    session.close();
    this.#schedule.disconnected();
    this.#state = { ...this.#state, connected: false, subscribed: false, refusedTopics: [], since: this.#state.connected ? Date.now() : this.#state.since };
    this.#retryLater();
  }

  #retryLater(): void {
    if (this.#stopping) return;
    if (this.#reconnectNow) {
      this.#reconnectNow = false;
      this.#connect();
      return;
    }
    const delayMs = this.#schedule.scheduleRetry(() => this.#connect());
    // At info: a person watching the log of a device that lost its broker sees when it will try again.
    const nextAttemptAt = new Date(Date.now() + delayMs).toISOString();
    this.#log.info({ delayMs, attempt: this.#schedule.attempts, nextAttemptAt }, `next connection attempt in ${(delayMs / 1000).toFixed(1)} s`);
  }

  #recordError(err: unknown): void {
    const message = errorMessage(err);
    if (message !== this.#loggedError) this.#log.warn({ error: message }, 'broker connection problem');
    this.#loggedError = message;
    this.#state = { ...this.#state, lastError: message };
  }
}

async function withTimeout(work: Promise<unknown>, ms: number): Promise<'done' | 'timeout' | 'failed'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  try {
    return await Promise.race([work.then(() => 'done' as const, () => 'failed' as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The return codes of the SUBACK MQTT.js attaches to a refused SUBSCRIBE, one per topic; undefined for other errors. */
function subackOf(err: unknown): readonly unknown[] | undefined {
  const packet = (err as { packet?: { cmd?: unknown; granted?: unknown } } | undefined)?.packet;
  return packet?.cmd === 'suback' && Array.isArray(packet.granted) ? packet.granted : undefined;
}

/** Scheme, host and port only: a URL may carry user:password, which must not reach the logs. */
function brokerAddress(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}`;
}
