import type { z } from 'zod';
import { PRESENCE_EXAMPLE, PresenceSchema } from './presence.js';
import { COMMAND_EXAMPLE, CommandEnvelopeSchema } from './command.js';
import { CommandResultSchema, RESULT_EXAMPLE } from './result.js';
import { INVENTORY_EXAMPLE, InventorySchema } from './inventory.js';
import { STATUS_EXAMPLE, StatusSchema } from './status.js';
import { EVENT_EXAMPLE, EventSchema } from './event.js';

/**
 * The wire contract as data: one entry per topic, with its payload schema and an example. docs/protocol.md is
 * generated from this list (npm run docs:protocol) and a test checks every example against its schema, so the
 * documentation cannot drift from the code. To add a topic: write its schema in its own file and append here.
 */
export interface TopicSpec {
  /** Topic pattern; `{root}` is broker.topicRoot, `{id}` a device id, `{group}` a group name. */
  pattern: string;
  direction: 'device to fleet' | 'fleet to device';
  qos: 0 | 1;
  retain: boolean;
  /** Who publishes it and when, in a sentence or two. */
  description: string;
  schema: z.ZodType;
  example: unknown;
}

export const WIRE_CONTRACT: readonly TopicSpec[] = [
  {
    pattern: '{root}/devices/{id}/presence',
    direction: 'device to fleet',
    qos: 1,
    retain: true,
    description:
      'Birth message `online` on every connect; the last will `offline` (reason `connection-lost`) carries the same ' +
      'boot sequence; a clean stop publishes `offline` (reason `stopped`) itself.',
    schema: PresenceSchema,
    example: PRESENCE_EXAMPLE,
  },
  {
    pattern: '{root}/devices/{id}/commands, {root}/groups/{group}/commands',
    direction: 'fleet to device',
    qos: 1,
    retain: false,
    description:
      'A command signed by an operator key (Ed25519 over the canonical JSON of every field but `sig`; see Signing ' +
      'commands below). The device checks size, strict JSON, schema, key, signature, target, validity window and its ' +
      'journal, in that order, before anything runs. ' +
      'Downloads a command starts end by its `expiresAt`. `command.cancel` (args `commandId`) is handled at once, not ' +
      'queued: a waiting command never runs, a running one that can be stopped ends `failed` with reason `cancelled` ' +
      '(a k3s upgrade past its swap restores the previous k3s first); the cancel succeeds, or fails `not_running` or `not_cancellable`.',
    schema: CommandEnvelopeSchema,
    example: COMMAND_EXAMPLE,
  },
  {
    pattern: '{root}/devices/{id}/results',
    direction: 'device to fleet',
    qos: 1,
    retain: false,
    description:
      'What became of a command: `rejected` with a reason (nothing ran), or `accepted`, `progress` and one final ' +
      '`succeeded` or `failed`, sent through the outbox so that it survives outages and restarts.',
    schema: CommandResultSchema,
    example: RESULT_EXAMPLE,
  },
  {
    pattern: '{root}/devices/{id}/inventory',
    direction: 'device to fleet',
    qos: 1,
    retain: true,
    description:
      'What the device is: board, serial, architecture, CPU, memory, OS and kernel, boot time, fleetlet and k3s ' +
      'versions, node name, labels, groups and identity fingerprints (never key material). Published by the link on ' +
      'every connect and again whenever it changes.',
    schema: InventorySchema,
    example: INVENTORY_EXAMPLE,
  },
  {
    pattern: '{root}/devices/{id}/status',
    direction: 'device to fleet',
    qos: 1,
    retain: false,
    description:
      'A sample every `telemetry.intervalSeconds` (default 30), through the outbox. `sampledAt` is the time of ' +
      'measurement; `historical: true` marks samples sent from the backlog after an outage. Readings the device ' +
      'cannot make are left out. About 0.6 KiB.',
    schema: StatusSchema,
    example: STATUS_EXAMPLE,
  },
  {
    pattern: '{root}/devices/{id}/events',
    direction: 'device to fleet',
    qos: 1,
    retain: false,
    description:
      'Transitions worth attention (k3s up/down/crash-loop/password rejected/cgroup missing, disk low, temperature ' +
      'high, under-voltage, throttling, clock jumps; every kind is listed under Event kinds below), `raised`/`cleared` ' +
      'or `occurred`, with a remedy where one exists. Deduplicated and rate-limited on the device; `suppressed` ' +
      'counts what a flapping condition held back.',
    schema: EventSchema,
    example: EVENT_EXAMPLE,
  },
];
