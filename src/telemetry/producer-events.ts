import { EVENT_KIND_PATTERN, type EventInput } from '../protocol/event.js';

/**
 * Turns an event of another part (the k3s supervisor's sink speaks `{ kind, at, remedy, detail }`) into the
 * shared event message: kind names in the wire's spelling, a severity and a sentence for people, and a detail
 * bounded to what the schema takes. Nothing that looks like a secret crosses over, only fingerprints.
 */
export interface ProducerEvent {
  kind: string;
  /** ms since the epoch */
  at: number;
  remedy?: string;
  detail?: Record<string, unknown>;
}

type Severity = EventInput['severity'];

const KNOWN: Record<string, { severity: Severity; message: string }> = {
  'k3s.up': { severity: 'info', message: 'k3s agent is up and healthy' },
  'k3s.down': { severity: 'warning', message: 'k3s agent is down' },
  'k3s.unhealthy': { severity: 'warning', message: 'k3s agent runs but its kubelet is not healthy' },
  'k3s.crash-loop': { severity: 'critical', message: 'k3s agent keeps exiting soon after start' },
  'k3s.adopted': { severity: 'info', message: 'a k3s agent still running from before was adopted' },
  'k3s.not-installed': { severity: 'critical', message: 'k3s is not installed' },
  'k3s.start-failed': { severity: 'critical', message: 'k3s agent could not be started' },
  'k3s.stop-forced': { severity: 'warning', message: 'k3s agent did not stop in time and was killed' },
  'k3s.password-rejected': { severity: 'critical', message: 'the server rejected the node password' },
  'k3s.cgroup-missing': { severity: 'critical', message: 'the kernel lacks the memory cgroup k3s needs' },
  'k3s.server-unreachable': { severity: 'warning', message: 'the k3s server cannot be reached' },
  'k3s.token-rejected': { severity: 'critical', message: 'the server rejected the join token' },
  'k3s.certificate-error': { severity: 'critical', message: 'a certificate of the k3s server is not trusted' },
  'k3s.identity': { severity: 'info', message: 'the node identity was created or repaired' },
  'state.database-recovered': { severity: 'warning', message: 'the state database was unreadable; it was moved aside and a fresh one started' },
};

const SECRET_KEY = /token|password|secret|private|credential/i;
const MAX_DETAIL_ENTRIES = 16;

export function eventFromProducer(event: ProducerEvent): EventInput {
  const kind = normaliseKind(event.kind);
  const known = KNOWN[kind];
  return {
    kind,
    // These report that something happened; none of them is later "cleared" by the same producer.
    state: 'occurred',
    severity: known?.severity ?? 'warning',
    message: known?.message ?? kind,
    ...(event.remedy ? { remedy: event.remedy.slice(0, 1024) } : {}),
    ...(event.detail ? { detail: boundedDetail(event.detail) } : {}),
    occurredAt: Number.isFinite(event.at) ? new Date(event.at) : undefined,
  };
}

/** "k3s.crash_loop" -> "k3s.crash-loop"; anything still not a valid kind becomes "unknown" rather than lost. */
function normaliseKind(kind: string): string {
  const spelled = kind.toLowerCase().replace(/_/g, '-').slice(0, 64);
  return EVENT_KIND_PATTERN.test(spelled) ? spelled : 'unknown';
}

function boundedDetail(detail: Record<string, unknown>): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  for (const [key, value] of Object.entries(detail)) {
    if (Object.keys(out).length >= MAX_DETAIL_ENTRIES) break;
    if (key.length > 64 || (SECRET_KEY.test(key) && !/fingerprint/i.test(key))) continue;
    if (value === undefined) continue;
    if (value === null || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) out[key] = value;
    else out[key] = (typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value))).slice(0, 256);
  }
  return out;
}
