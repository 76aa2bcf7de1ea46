/**
 * What the supervisor tells the rest of fleetlet. Events go out through a narrow sink so that the composition
 * root decides where they end up (event log now, the outbox later) and the supervisor imports neither.
 */
export type K3sEventKind =
  | 'k3s.up'
  | 'k3s.down'
  | 'k3s.unhealthy'
  | 'k3s.crash_loop'
  | 'k3s.adopted'
  | 'k3s.not_installed'
  | 'k3s.start_failed'
  | 'k3s.stop_forced'
  | 'k3s.foreign_process'
  | 'k3s.password_rejected'
  | 'k3s.cgroup_missing'
  | 'k3s.server_unreachable'
  | 'k3s.token_rejected'
  | 'k3s.certificate_error'
  | 'k3s.identity';

export interface K3sEvent {
  kind: K3sEventKind;
  at: number;
  /** What a person should do about it, when fleetlet knows. */
  remedy?: string;
  detail: Record<string, unknown>;
}

export interface K3sEventSink {
  emit(event: K3sEvent): void;
}
