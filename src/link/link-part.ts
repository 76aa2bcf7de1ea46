import type { Config } from '../config/schema.js';
import type { Heartbeat } from '../lib/heartbeat.js';
import type { Logger } from '../lib/logger.js';
import type { Topics } from '../protocol/topics.js';
import type { ClientCredentialSource } from '../identity/client-credentials.js';
import { Drainer, type DrainSource } from './drain.js';
import { MqttLink, type InventoryProvider } from './link.js';

export interface LinkPartDeps {
  deviceId: string;
  /** The device's groups: their command topics are subscribed besides its own. */
  groups: readonly string[];
  /** Bound on a received command payload (limits.maxMessageBytes). */
  maxMessageBytes: number;
  bootSequence: number;
  topics: Topics;
  /** The store the link drains while connected: nothing leaves it before the broker acknowledged it. */
  outbox: DrainSource;
  inventory: InventoryProvider;
  progress: Heartbeat;
  fleetletVersion: string;
  logger: Logger;
  /** With enrolment, the client certificate the link connects with (it waits while there is none). */
  credentials?: ClientCredentialSource;
}

/** The link part, built from the `broker` config section: the MQTT connection and the outbox drain it runs. */
export function buildLinkPart(broker: Config['broker'], deps: LinkPartDeps): MqttLink {
  return new MqttLink({
    broker,
    topics: deps.topics,
    deviceId: deps.deviceId,
    groups: deps.groups,
    maxMessageBytes: deps.maxMessageBytes,
    bootSequence: deps.bootSequence,
    fleetletVersion: deps.fleetletVersion,
    logger: deps.logger,
    drain: new Drainer(deps.outbox, { window: broker.inflightWindow, logger: deps.logger }),
    inventory: deps.inventory,
    progress: deps.progress,
    ...(deps.credentials ? { credentials: deps.credentials } : {}),
  });
}
