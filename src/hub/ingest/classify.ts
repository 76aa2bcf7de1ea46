import { createHash } from 'node:crypto';
import type { z } from 'zod';
import { EventSchema, type FleetEvent } from '../../protocol/event.js';
import { InventorySchema, type Inventory } from '../../protocol/inventory.js';
import { PresenceSchema, type Presence } from '../../protocol/presence.js';
import { CommandResultSchema, type CommandResult } from '../../protocol/result.js';
import { StatusSchema, type Status } from '../../protocol/status.js';
import { parseStrictJson } from '../../protocol/strict-json.js';
import type { Topics } from '../../protocol/topics.js';

/**
 * Turns one received MQTT message into what the store needs: a validated report of a device, or a rejection with
 * its reason. It never throws: a hostile or broken payload must not stop ingest, it is counted and kept aside.
 */
interface Received {
  deviceId: string;
  receivedAtMs: number;
  /** Delivered as a retained copy at subscribe time, not sent now: it says nothing about when the device was heard. */
  retained: boolean;
}

/** Reports that can be re-sent carry a key: the outbox's messageId, or a hash of the bytes when there is none. */
interface Keyed {
  messageId: string;
}

export type IngestItem =
  | (Received & { channel: 'presence'; presence: Presence })
  | (Received & { channel: 'inventory'; inventory: Inventory })
  | (Received & Keyed & { channel: 'status'; status: Status })
  | (Received & Keyed & { channel: 'events'; event: FleetEvent; payload: string })
  | (Received & Keyed & { channel: 'results'; result: CommandResult; payload: string })
  | { channel: 'rejected'; topic: string; deviceId: string | null; reason: string; receivedAtMs: number; payload: Buffer }
  | { channel: 'ignored' };

export const INGESTED_CHANNELS = ['presence', 'inventory', 'status', 'events', 'results'] as const;

export interface ClassifyOptions {
  topics: Topics;
  maxMessageBytes: number;
}

export function classifyMessage(
  options: ClassifyOptions,
  message: { topic: string; payload: Buffer; retain: boolean },
  receivedAtMs: number,
): IngestItem {
  const { topic, payload } = message;
  const parsedTopic = options.topics.parseDeviceTopic(topic);
  const reject = (reason: string, deviceId: string | null = parsedTopic?.deviceId ?? null): IngestItem => ({
    channel: 'rejected',
    topic,
    deviceId,
    reason,
    receivedAtMs,
    payload,
  });
  if (!parsedTopic) return reject('not a device topic', null);
  const { deviceId, channel } = parsedTopic;
  if (channel === 'commands') return { channel: 'ignored' };
  // An empty retained message clears the topic (an operator removing a device): nothing to store.
  if (payload.length === 0) return message.retain || channel === 'presence' || channel === 'inventory' ? { channel: 'ignored' } : reject('empty payload');
  if (payload.length > options.maxMessageBytes) return reject(`payload of ${payload.length} bytes exceeds ${options.maxMessageBytes}`);
  const json = parseStrictJson(payload);
  if (!json.ok) return reject(`payload is not strict JSON: ${json.problem}`);
  const base = { deviceId, receivedAtMs, retained: message.retain };
  const check = <T>(schema: z.ZodType<T>): T | string => {
    const parsed = schema.safeParse(json.value);
    if (parsed.success) return parsed.data;
    return `invalid ${channel}: ${parsed.error.issues
      .slice(0, 3)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ')}`;
  };
  const messageId = (value: { messageId?: string | undefined }) =>
    value.messageId ?? `sha256:${createHash('sha256').update(payload).digest('hex')}`;

  switch (channel) {
    case 'presence': {
      const presence = check(PresenceSchema);
      return typeof presence === 'string' ? reject(presence) : { ...base, channel, presence };
    }
    case 'inventory': {
      const inventory = check(InventorySchema);
      if (typeof inventory === 'string') return reject(inventory);
      if (inventory.deviceId !== deviceId) return reject(`inventory of "${inventory.deviceId}" on the topic of "${deviceId}"`);
      return { ...base, channel, inventory };
    }
    case 'status': {
      const status = check(StatusSchema);
      return typeof status === 'string' ? reject(status) : { ...base, channel, status, messageId: messageId(status) };
    }
    case 'events': {
      const event = check(EventSchema);
      if (typeof event === 'string') return reject(event);
      return { ...base, channel, event, messageId: messageId(event), payload: payload.toString('utf8') };
    }
    case 'results': {
      const result = check(CommandResultSchema);
      if (typeof result === 'string') return reject(result);
      if (result.deviceId !== deviceId) return reject(`result of "${result.deviceId}" on the topic of "${deviceId}"`);
      return { ...base, channel, result, messageId: messageId(result), payload: payload.toString('utf8') };
    }
  }
}
