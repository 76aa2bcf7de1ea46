import type { EventKind } from '../protocol/event.js';

/**
 * What the supervisor tells the rest of fleetlet. Events go out through a narrow sink so that the composition
 * root decides where they end up (event log now, the outbox later) and the supervisor imports neither.
 * These are the kinds the k3s part emits, in the wire's spelling; protocol/event.ts holds their severity, sentence
 * and remedy, and the emit functions take only these, so the list cannot fall behind what is sent.
 */
export const K3S_EVENT_KINDS = [
  'k3s.up',
  'k3s.down',
  'k3s.unhealthy',
  'k3s.crash-loop',
  'k3s.adopted',
  'k3s.not-installed',
  'k3s.start-failed',
  'k3s.stop-forced',
  'k3s.foreign-process',
  'k3s.password-rejected',
  'k3s.cgroup-missing',
  'k3s.server-unreachable',
  'k3s.token-rejected',
  'k3s.certificate-error',
  'k3s.identity',
] as const satisfies readonly EventKind[];

export type K3sEventKind = (typeof K3S_EVENT_KINDS)[number];

export interface K3sEvent {
  kind: K3sEventKind;
  at: number;
  /** What a person should do about it, when fleetlet knows. */
  remedy?: string;
  /** Why it happened, in fleetlet's words and free of secrets; the event's message says it after its sentence. */
  reason?: string;
  detail: Record<string, unknown>;
}

export interface K3sEventSink {
  emit(event: K3sEvent): void;
}
