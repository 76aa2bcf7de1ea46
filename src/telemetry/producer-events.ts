import { eventKindSpec, type EventInput, type EventKind } from '../protocol/event.js';

/**
 * Turns an event of another part (the k3s supervisor's sink speaks `{ kind, at, remedy, detail }`) into the
 * shared event message: the table's severity and sentence for its kind (protocol/event.ts), the producer's remedy
 * or the table's, and a detail bounded to what the schema takes. Nothing that looks like a secret crosses over,
 * only fingerprints.
 */
export interface ProducerEvent {
  kind: EventKind;
  /** ms since the epoch */
  at: number;
  remedy?: string;
  /** Why it happened, written by fleetlet (never a quoted error message): appended to the kind's sentence. */
  reason?: string;
  detail?: Record<string, unknown>;
}

const SECRET_KEY = /token|password|secret|private|credential/i;
const MAX_DETAIL_ENTRIES = 16;

export function eventFromProducer(event: ProducerEvent): EventInput {
  const { severity, sentence, remedy } = eventKindSpec(event.kind);
  const ownRemedy = event.remedy ?? remedy;
  return {
    kind: event.kind,
    // These report that something happened; none of them is later "cleared" by the same producer.
    state: 'occurred',
    severity,
    message: (event.reason ? `${sentence}: ${event.reason}` : sentence).slice(0, 512),
    ...(ownRemedy ? { remedy: ownRemedy.slice(0, 1024) } : {}),
    ...(event.detail ? { detail: boundedDetail(event.detail) } : {}),
    occurredAt: Number.isFinite(event.at) ? new Date(event.at) : undefined,
  };
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
