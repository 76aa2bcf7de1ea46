import type { z } from 'zod';
import { PRESENCE_EXAMPLE, PresenceSchema } from './presence.js';
import { COMMAND_EXAMPLE, CommandEnvelopeSchema } from './command.js';
import { CommandResultSchema, RESULT_EXAMPLE } from './result.js';

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
      'A command signed by an operator key (Ed25519 over the canonical JSON of every field but `sig`). The device ' +
      'checks size, schema, key, signature, target, validity window and its journal, in that order, before anything runs.',
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
];
