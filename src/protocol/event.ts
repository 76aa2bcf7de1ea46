import { z } from 'zod';
import { SCHEMA_VERSION } from './topics.js';

/**
 * `{root}/devices/{id}/events`, QoS 1, through the outbox. A state transition worth an operator's attention.
 * Every producer (telemetry, the k3s supervisor, ...) sends through one deduplicating, rate-limited sink, so a
 * flapping condition cannot flood the outbox; `suppressed` says how many events of the same key it held back
 * since the previous one was sent.
 */
export const EVENT_KIND_PATTERN = /^[a-z0-9]+(?:[.-][a-z0-9]+){0,7}$/;

const SEVERITIES = ['info', 'warning', 'critical'] as const;
type Severity = (typeof SEVERITIES)[number];

/**
 * Every event kind fleetlet produces, in its wire spelling: the severity of a raised or occurred event (a cleared
 * one is info), the sentence sent when a producer writes no message of its own, and what a person can do about it
 * (a producer that knows more, e.g. the log line k3s complained with, sends its own). Producers emit `EventKind`,
 * so a kind missing here fails to compile; docs/protocol.md lists this table.
 */
export const EVENT_KINDS = {
  'k3s.up': { severity: 'info', sentence: 'k3s agent is up and healthy' },
  'k3s.down': {
    severity: 'warning',
    sentence: 'k3s agent is down',
    remedy: 'fleetlet starts it again; when it keeps exiting, `fleetlet k3s logs` shows why',
  },
  'k3s.unhealthy': {
    severity: 'warning',
    sentence: 'k3s agent runs but its kubelet is not healthy',
    remedy: '`fleetlet k3s status` names the last problem k3s logged, `fleetlet k3s logs` shows the rest',
  },
  'k3s.crash-loop': {
    severity: 'critical',
    sentence: 'k3s agent keeps exiting soon after start',
    remedy: 'fleetlet keeps retrying, more slowly; the last lines of `fleetlet k3s logs` and `fleetlet k3s status` say why it exits',
  },
  'k3s.adopted': { severity: 'info', sentence: 'a k3s agent still running from before was adopted' },
  'k3s.not-installed': {
    severity: 'critical',
    sentence: 'k3s is not installed',
    remedy: 'run `fleetlet k3s install`, or install from an air-gap folder',
  },
  'k3s.start-failed': {
    severity: 'critical',
    sentence: 'k3s agent could not be started',
    remedy: 'detail names the step that failed; check that k3s.binaryPath is an executable k3s (`fleetlet k3s install`) and the k3s settings',
  },
  'k3s.stop-forced': {
    severity: 'warning',
    sentence: 'k3s agent did not stop in time and was killed',
    remedy: 'nothing to do once; when it recurs, `fleetlet k3s logs` shows what k3s was doing while it stopped',
  },
  'k3s.foreign-process': {
    severity: 'warning',
    sentence: 'another k3s agent runs from the binary fleetlet supervises',
    remedy:
      "another k3s runs from the same binary (install.sh's k3s-agent service?): two agents on one node fight over their ports; stop it with `systemctl disable --now k3s-agent`, or set k3s.enabled: false to leave k3s to it",
  },
  'k3s.password-rejected': {
    severity: 'critical',
    sentence: 'the server rejected the node password',
    remedy:
      "the server holds another password for this node name. Either another device uses the same name (set k3s.nodeName, or k3s.withNodeId: true), or this device lost its password. An operator fixes it on the server: `kubectl delete node <name>` (its node-password secret goes with it) or `kubectl -n kube-system delete secret <name>.node-password.k3s`; the agent then registers on its next retry.",
  },
  'k3s.cgroup-missing': {
    severity: 'critical',
    sentence: 'the kernel lacks the memory cgroup k3s needs',
    remedy:
      'the kernel runs without the memory cgroup. Append " cgroup_memory=1 cgroup_enable=memory" to the single line of /boot/firmware/cmdline.txt (/boot/cmdline.txt on Debian 11 and older Pi OS), then reboot.',
  },
  'k3s.server-unreachable': {
    severity: 'warning',
    sentence: 'the k3s server cannot be reached',
    remedy: 'the agent cannot reach k3s.serverUrl: check the network, DNS and that port 6443 on the server is reachable from this device.',
  },
  'k3s.token-rejected': {
    severity: 'critical',
    sentence: 'the server rejected the join token',
    remedy: "the server refused the join token: check k3s.token / k3s.tokenFile against the server's /var/lib/rancher/k3s/server/node-token.",
  },
  'k3s.certificate-error': {
    severity: 'critical',
    sentence: 'a certificate of the k3s server is not trusted',
    remedy: 'TLS to the server failed: check the device clock (timedatectl) and that k3s.serverUrl names the server the certificate was issued for.',
  },
  'k3s.identity': { severity: 'info', sentence: 'the node identity was created or repaired' },
  /**
   * A board swap (the card moved to a new board) and a cloned image look the same from the device: both keep the
   * recorded device id and node password, so a swapped board stays reachable, and a person decides. Raised at every
   * start until identity.reidentify answers it; cleared then.
   */
  'identity.fingerprint-changed': {
    severity: 'critical',
    sentence: 'this device runs on another machine than the one its id was recorded on',
    remedy:
      'if this card was moved to a new board, send identity.reidentify with args.fingerprint = detail.currentFingerprint; ' +
      'if the image was cloned (several devices report this id), send each one identity.reidentify with its fingerprint, ' +
      'a new deviceId (with a client certificate issued to it) and newNodeIdentity: true',
  },
  'enrolment.refused': {
    severity: 'critical',
    sentence: 'the hub refused to issue this device a certificate',
    remedy:
      'approve the device in the hub, or give it a valid bootstrap token (enrolment.bootstrapTokenFile); fleetlet asks again every enrolment.refusedRetrySeconds',
  },
  'enrolment.certificate-refused': {
    severity: 'critical',
    sentence: 'the hub issued a certificate this device refuses; it keeps the one it has',
    remedy: "check that enrolment.caFile is the CA the hub signs with, and that the hub issues to the device id and key of the request",
  },
  'state.database-recovered': {
    severity: 'warning',
    sentence: 'the state database was unreadable; it was moved aside and a fresh one started',
    remedy: 'commands issued before the recovery are refused as replayed: send them again with a new id; detail.movedTo keeps the unreadable copy',
  },
  'state.disk-full': {
    severity: 'critical',
    sentence: 'the state file system is full; fleetlet runs on an in-memory copy of its state and refuses commands',
    remedy: 'free space on that file system (old logs, unused k3s images), then restart fleetlet (systemctl restart fleetlet)',
  },
  'disk.low': {
    severity: 'warning',
    sentence: 'little free space on the state or k3s filesystem',
    remedy: 'free space on the filesystem the key names: for k3s prune unused images (k3s crictl rmi --prune), for state old files',
  },
  'temperature.high': {
    severity: 'warning',
    sentence: 'the SoC is hot',
    remedy: 'improve cooling (heatsink, fan, airflow); the firmware throttles the CPU when hot',
  },
  'power.under-voltage': {
    severity: 'critical',
    sentence: 'the supply voltage is too low (Raspberry Pi firmware)',
    remedy: 'use the official power supply and a short, thick cable; under-voltage corrupts SD cards',
  },
  'power.throttled': {
    severity: 'warning',
    sentence: 'the firmware throttles or caps the CPU (Raspberry Pi firmware)',
    remedy: 'check power and cooling',
  },
  'clock.jump': {
    severity: 'info',
    sentence: 'the wall clock moved against the monotonic clock',
    remedy: 'usual after the first time sync of a board without a real-time clock; otherwise check NTP',
  },
} as const satisfies Record<string, EventKindSpec>;

interface EventKindSpec {
  severity: Severity;
  sentence: string;
  remedy?: string;
}

export type EventKind = keyof typeof EVENT_KINDS;

/** The table's entry, typed loosely enough that a producer may read `remedy` of any kind. */
export function eventKindSpec(kind: EventKind): EventKindSpec {
  return EVENT_KINDS[kind];
}

export function isEventKind(kind: string): kind is EventKind {
  return Object.hasOwn(EVENT_KINDS, kind);
}

const detailValue = z.union([z.string().max(256), z.number(), z.boolean(), z.null()]);

export const EventSchema = z.object({
  schemaVersion: z.literal(SCHEMA_VERSION),
  kind: z.string().max(64).regex(EVENT_KIND_PATTERN, { error: 'expected a kind like "disk.low"' }),
  /** Which instance of the kind, when there are several (e.g. the disk "state" or "k3s"). */
  key: z.string().max(64).regex(/^[A-Za-z0-9_.-]*$/).optional(),
  /** raised/cleared for conditions that last; occurred for one-off happenings. */
  state: z.enum(['raised', 'cleared', 'occurred']),
  severity: z.enum(SEVERITIES),
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

/**
 * What a producer hands to the event sink; the sink stamps the version, the time and the suppressed count. Its kind
 * is one of the table's: a receiver accepts any kind of the same shape (from a newer agent), a producer only these.
 */
export type EventInput = Omit<FleetEvent, 'schemaVersion' | 'occurredAt' | 'suppressed' | 'kind'> & { kind: EventKind; occurredAt?: Date };

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
