import { z } from 'zod';
import { SCHEMA_VERSION } from './topics.js';

/**
 * `{root}/devices/{id}/presence`, retained, QoS 1. The link publishes `online` on every connect and registers
 * `offline` with the same boot sequence as its last will, so the broker reports a lost connection for it.
 * The boot sequence tells a stale will from the current session: an `offline` whose bootSequence is lower
 * than the last `online` seen belongs to an earlier run of the agent.
 */
export const PresenceSchema = z.object({
  schemaVersion: z.literal(SCHEMA_VERSION),
  state: z.enum(['online', 'offline']),
  /** Why the device is offline: it stopped cleanly, or the broker lost it (the last will). */
  reason: z.enum(['stopped', 'connection-lost']).optional(),
  bootSequence: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  /** When the message was made; for the last will, when the connection that carries it was opened. */
  at: z.iso.datetime(),
  fleetletVersion: z.string().min(1).max(64),
});

export type Presence = z.infer<typeof PresenceSchema>;

export const PRESENCE_EXAMPLE: Presence = {
  schemaVersion: SCHEMA_VERSION,
  state: 'online',
  bootSequence: 12,
  at: '2026-03-01T08:15:02.114Z',
  fleetletVersion: '0.1.0',
};

export function presenceMessage(
  state: Presence['state'],
  bootSequence: number,
  fleetletVersion: string,
  reason?: Presence['reason'],
  now: Date = new Date(),
): Presence {
  return PresenceSchema.parse({
    schemaVersion: SCHEMA_VERSION,
    state,
    ...(reason ? { reason } : {}),
    bootSequence,
    at: now.toISOString(),
    fleetletVersion,
  });
}
