import type { Status } from '../protocol/status.js';
import type { EventGateStats } from './event-gate.js';

export interface MetricsInput {
  status?: Status;
  events: EventGateStats;
  samples: { total: number; failed: number; cpuSeconds: number };
  fleetletVersion: string;
}

type Labels = Record<string, string>;

/**
 * Prometheus text exposition format 0.0.4. Each family gets HELP and TYPE once; label values are escaped.
 * Readings the device does not have are left out, as Prometheus expects, instead of exported as 0.
 */
export function renderMetrics(input: MetricsInput): string {
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter', help: string, samples: [Labels, number | undefined][]) => {
    const present = samples.filter((s): s is [Labels, number] => s[1] !== undefined && Number.isFinite(s[1]));
    if (present.length === 0) return;
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of present) out.push(`${name}${formatLabels(labels)} ${value}`);
  };
  const s = input.status;
  family('fleetlet_info', 'gauge', 'fleetlet build information.', [[{ version: input.fleetletVersion }, 1]]);
  family('fleetlet_telemetry_samples_total', 'counter', 'Status samples taken.', [[{}, input.samples.total]]);
  family('fleetlet_telemetry_sample_failures_total', 'counter', 'Status samples that failed.', [[{}, input.samples.failed]]);
  family('fleetlet_telemetry_sample_cpu_seconds_total', 'counter', 'CPU time spent taking samples.', [
    [{}, input.samples.cpuSeconds],
  ]);
  const events = input.events;
  family('fleetlet_events_total', 'counter', 'Events by what the event gate did with them.', [
    [{ outcome: 'sent' }, events.sent],
    [{ outcome: 'duplicate' }, events.duplicates],
    [{ outcome: 'rate_limited' }, events.rateLimited],
    [{ outcome: 'invalid' }, events.invalid],
    [{ outcome: 'failed' }, events.failed],
  ]);
  if (s) {
    family('fleetlet_status_seq', 'gauge', 'Sequence number of the latest status sample.', [[{}, s.seq]]);
    family('fleetlet_uptime_seconds', 'gauge', 'Time since the device booted.', [[{}, s.uptimeSeconds]]);
    family('fleetlet_cpu_usage_percent', 'gauge', 'CPU busy share since the previous sample.', [[{}, s.cpu.percent]]);
    family('fleetlet_cpu_frequency_megahertz', 'gauge', 'Current frequency of CPU 0.', [[{}, s.cpu.mhz]]);
    family('fleetlet_load_average', 'gauge', 'Load average.', [
      [{ period: '1m' }, s.cpu.load?.[0]],
      [{ period: '5m' }, s.cpu.load?.[1]],
      [{ period: '15m' }, s.cpu.load?.[2]],
    ]);
    family('fleetlet_memory_bytes', 'gauge', 'Memory and swap.', [
      [{ kind: 'total' }, s.memory?.totalBytes],
      [{ kind: 'available' }, s.memory?.availableBytes],
      [{ kind: 'swap_total' }, s.memory?.swapTotalBytes],
      [{ kind: 'swap_free' }, s.memory?.swapFreeBytes],
    ]);
    family('fleetlet_filesystem_size_bytes', 'gauge', 'Size of the filesystem of a watched directory.', s.disks.map((d) => [{ dir: d.name }, d.totalBytes]));
    family('fleetlet_filesystem_free_bytes', 'gauge', 'Free space of the filesystem of a watched directory.', s.disks.map((d) => [{ dir: d.name }, d.freeBytes]));
    family('fleetlet_temperature_celsius', 'gauge', 'Hottest thermal zone.', [[{}, s.temperatureC]]);
    family('fleetlet_network_bytes_total', 'counter', 'Bytes through physical interfaces since boot.', [
      [{ direction: 'rx' }, s.network?.rxBytes],
      [{ direction: 'tx' }, s.network?.txBytes],
    ]);
    if (s.throttle) {
      const flags = ['under-voltage', 'arm-frequency-capped', 'throttled', 'soft-temperature-limit'] as const;
      family('fleetlet_throttle_active', 'gauge', 'Raspberry Pi firmware condition now (1) or not (0).', flags.map((f) => [{ flag: f }, s.throttle!.now.includes(f) ? 1 : 0]));
      family('fleetlet_throttle_occurred', 'gauge', 'Raspberry Pi firmware condition seen since boot.', flags.map((f) => [{ flag: f }, s.throttle!.occurred.includes(f) ? 1 : 0]));
    }
    family('fleetlet_k3s_healthy', 'gauge', 'Whether the supervised k3s agent is healthy.', [[{ state: s.k3s.state }, s.k3s.healthy ? 1 : 0]]);
    family('fleetlet_link_connected', 'gauge', 'Whether the MQTT link is connected.', [[{}, s.link.connected ? 1 : 0]]);
    family('fleetlet_outbox_depth', 'gauge', 'Reports waiting in the outbox.', classes(s.outbox.depth));
    family('fleetlet_outbox_dropped_total', 'counter', 'Reports dropped by the outbox budgets.', classes(s.outbox.dropped));
  }
  return `${out.join('\n')}\n`;
}

function classes(counts: Status['outbox']['depth']): [Labels, number][] {
  return [
    [{ class: 'status' }, counts.status],
    [{ class: 'event' }, counts.event],
    [{ class: 'result' }, counts.result],
  ];
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
  return `{${entries.map(([k, v]) => `${k}="${escape(v)}"`).join(',')}}`;
}
