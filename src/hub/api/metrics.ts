import type { HubDatabase } from '../db/open.js';

interface MetricSample {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  value: number;
  labels?: Record<string, string>;
}

/** What the HTTP layer counts itself. */
export interface ApiCounters {
  requests: Map<string, number>;
  loginFailures: number;
  streamClients: () => number;
}

/**
 * `/metrics` in the Prometheus text format: what the database says (devices by state, ingest over the last minute
 * by all replicas, the age of the newest message, the stored counters such as rejects), what the API counted, and
 * the ingest's own text (its rates, lag, commits and the database size) when this process runs one; without it,
 * the database size is given here.
 */
export async function renderMetrics(hub: HubDatabase, api: ApiCounters, ingestText: string | undefined, now: number): Promise<string> {
  const samples: MetricSample[] = [];
  const byState = await hub.db
    .selectFrom('devices')
    .select((eb) => ['presence_state', eb.fn.countAll<number>().as('n')])
    .groupBy('presence_state')
    .execute();
  for (const state of ['online', 'offline', 'unknown']) {
    const n = byState.filter((r) => (r.presence_state ?? 'unknown') === state).reduce((sum, r) => sum + Number(r.n), 0);
    samples.push({ name: 'fleetlet_hub_devices', help: 'Devices known to the hub, by presence.', type: 'gauge', value: n, labels: { state } });
  }
  const recent = await hub.db
    .selectFrom('received_messages')
    .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('received_at_ms').as('newest')])
    .where('received_at_ms', '>=', now - 60_000)
    .executeTakeFirstOrThrow();
  samples.push({
    name: 'fleetlet_hub_ingest_messages_per_second',
    help: 'Messages stored per second, averaged over the last minute.',
    type: 'gauge',
    value: Number(recent.n) / 60,
  });
  const newest = await hub.db.selectFrom('devices').select((eb) => eb.fn.max('last_seen_ms').as('at')).executeTakeFirstOrThrow();
  if (newest.at !== null) {
    samples.push({
      name: 'fleetlet_hub_newest_message_age_seconds',
      help: 'Seconds since the newest stored message was received (grows when ingest stalls or the fleet is silent).',
      type: 'gauge',
      value: Math.max(0, (now - Number(newest.at)) / 1000),
    });
  }
  for (const counter of await hub.db.selectFrom('hub_counters').selectAll().orderBy('name').execute()) {
    samples.push({
      name: 'fleetlet_hub_stored_counter',
      help: 'Counters the replicas keep in the database (e.g. rejected_total), over all replicas and restarts.',
      type: 'counter',
      value: Number(counter.value),
      labels: { name: counter.name },
    });
  }
  if (ingestText === undefined) {
    samples.push({ name: 'fleetlet_hub_database_bytes', help: 'Size of the hub database.', type: 'gauge', value: await hub.sizeBytes() });
  }
  for (const [code, value] of api.requests) {
    samples.push({ name: 'fleetlet_hub_http_requests_total', help: 'API requests answered, by status code.', type: 'counter', value, labels: { code } });
  }
  samples.push({ name: 'fleetlet_hub_login_failures_total', help: 'Refused logins since start.', type: 'counter', value: api.loginFailures });
  samples.push({ name: 'fleetlet_hub_stream_clients', help: 'Open /api/v1/stream connections.', type: 'gauge', value: api.streamClients() });
  return `${format(samples)}${ingestText ?? ''}`;
}

function format(samples: MetricSample[]): string {
  const lines: string[] = [];
  const described = new Set<string>();
  for (const sample of samples) {
    if (!described.has(sample.name)) {
      described.add(sample.name);
      lines.push(`# HELP ${sample.name} ${sample.help}`, `# TYPE ${sample.name} ${sample.type}`);
    }
    const labels = Object.entries(sample.labels ?? {})
      .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
      .join(',');
    lines.push(`${sample.name}${labels ? `{${labels}}` : ''} ${Number.isFinite(sample.value) ? sample.value : 0}`);
  }
  return `${lines.join('\n')}\n`;
}
