import { z } from 'zod';
import { SCHEMA_VERSION } from './topics.js';

/**
 * `{root}/devices/{id}/events`, QoS 1, through the outbox. A state transition worth an operator's attention.
 * Every producer (telemetry, the k3s supervisor, ...) sends through one deduplicating, rate-limited sink, so a
 * flapping condition cannot flood the outbox; `suppressed` says how many events of the same key it held back
 * since the previous one was sent.
 */
export const EVENT_KIND_PATTERN = /^[a-z0-9]+(?:[.-][a-z0-9]+){0,7}$/;

/** The kinds fleetlet itself produces, each with the sentence sent when a producer gives none; any kind of the same shape is valid. */
export const EVENT_KINDS: Readonly<Record<string, string>> = {
  'k3s.up': 'k3s agent is up and healthy',
  'k3s.down': 'k3s agent is down',
  'k3s.unhealthy': 'k3s agent runs but its kubelet is not healthy',
  'k3s.crash-loop': 'k3s agent keeps exiting soon after start',
  'k3s.adopted': 'a k3s agent still running from before was adopted',
  'k3s.not-installed': 'k3s is not installed',
  'k3s.start-failed': 'k3s agent could not be started',
  'k3s.stop-forced': 'k3s agent did not stop in time and was killed',
  'k3s.password-rejected': 'the server rejected the node password',
  'k3s.cgroup-missing': 'the kernel lacks the memory cgroup k3s needs',
  'k3s.server-unreachable': 'the k3s server cannot be reached',
  'k3s.token-rejected': 'the server rejected the join token',
  'k3s.certificate-error': 'a certificate of the k3s server is not trusted',
  'k3s.identity': 'the node identity was created or repaired',
  'identity.fingerprint-changed': 'this device runs on another machine than the one its id was recorded on',
  'state.database-recovered': 'the state database was unreadable; it was moved aside and a fresh one started',
  'state.disk-full': 'the state file system is full; fleetlet runs on an in-memory copy of its state and refuses commands',
  'disk.low': 'little free space on the state or k3s filesystem',
  'temperature.high': 'the SoC is hot',
  'power.under-voltage': 'the supply voltage is too low (Raspberry Pi firmware)',
  'power.throttled': 'the firmware throttles or caps the CPU (Raspberry Pi firmware)',
  'clock.jump': 'the wall clock moved against the monotonic clock',
};

/**
 * A board swap (the card moved to a new board) and a cloned image look the same from the device: both keep the
 * recorded device id and node password, so a swapped board stays reachable, and a person decides. Raised at every
 * start until identity.reidentify answers it; cleared then.
 */
export const FINGERPRINT_CHANGED_EVENT = {
  kind: 'identity.fingerprint-changed',
  severity: 'critical',
  remedy:
    'if this card was moved to a new board, send identity.reidentify with args.fingerprint = detail.currentFingerprint; ' +
    'if the image was cloned (several devices report this id), send each one identity.reidentify with its fingerprint, ' +
    'a new deviceId (with a client certificate issued to it) and newNodeIdentity: true',
} as const;

const detailValue = z.union([z.string().max(256), z.number(), z.boolean(), z.null()]);

export const EventSchema = z.object({
  schemaVersion: z.literal(SCHEMA_VERSION),
  kind: z.string().max(64).regex(EVENT_KIND_PATTERN, { error: 'expected a kind like "disk.low"' }),
  /** Which instance of the kind, when there are several (e.g. the disk "state" or "k3s"). */
  key: z.string().max(64).regex(/^[A-Za-z0-9_.-]*$/).optional(),
  /** raised/cleared for conditions that last; occurred for one-off happenings. */
  state: z.enum(['raised', 'cleared', 'occurred']),
  severity: z.enum(['info', 'warning', 'critical']),
  message: z.string().min(1).max(512),
  /** What a person can do about it. */
  remedy: z.string().max(1024).optional(),
  detail: z
    .record(z.string().max(64), detailValue)
    .refine((d) => Object.keys(d).length <= 16, { error: 'at most 16 detail entries' })
    .optional(),
  occurredAt: z.iso.datetime(),
  suppressed: z.int().min(0).optional(),
  /** Set by the outbox: the same on every re-send, for deduplication downstream. */
  messageId: z.string().max(64).optional(),
  /** Set by the link when the event is sent from the backlog after an outage. */
  historical: z.boolean().optional(),
});

export type FleetEvent = z.infer<typeof EventSchema>;

/** What a producer hands to the event sink; the sink stamps the version, the time and the suppressed count. */
export type EventInput = Omit<FleetEvent, 'schemaVersion' | 'occurredAt' | 'suppressed'> & { occurredAt?: Date };

/** The one way producers report events; the composition root gives each producer the same sink. */
export interface EventSink {
  emit(event: EventInput): void;
}

export const EVENT_EXAMPLE: FleetEvent = {
  schemaVersion: SCHEMA_VERSION,
  kind: 'disk.low',
  key: 'k3s',
  state: 'raised',
  severity: 'warning',
  message: 'filesystem of k3s has 6.2% free (1.9 GiB of 29.0 GiB)',
  remedy: 'prune unused images (k3s crictl rmi --prune) or grow the filesystem',
  detail: { freeBytes: 2_040_109_465, totalBytes: 31_159_926_784 },
  occurredAt: '2026-03-01T08:15:30.004Z',
  suppressed: 0,
};
