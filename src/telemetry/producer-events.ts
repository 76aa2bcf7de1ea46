import { EVENT_KIND_PATTERN, EVENT_KINDS, type EventInput } from '../protocol/event.js';

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

/** Kinds that are good news or bookkeeping; unknown kinds count as warnings. */
const SEVERITY: Record<string, Severity> = {
  'k3s.up': 'info',
  'k3s.adopted': 'info',
  'k3s.identity': 'info',
  'k3s.crash-loop': 'critical',
  'k3s.not-installed': 'critical',
  'k3s.start-failed': 'critical',
  'k3s.password-rejected': 'critical',
  'k3s.cgroup-missing': 'critical',
  'k3s.token-rejected': 'critical',
  'k3s.certificate-error': 'critical',
};

const SECRET_KEY = /token|password|secret|private|credential/i;
const MAX_DETAIL_ENTRIES = 16;

export function eventFromProducer(event: ProducerEvent): EventInput {
  const kind = normaliseKind(event.kind);
  return {
    kind,
    // These report that something happened; none of them is later "cleared" by the same producer.
    state: 'occurred',
    severity: SEVERITY[kind] ?? 'warning',
    message: EVENT_KINDS[kind] ?? kind,
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
