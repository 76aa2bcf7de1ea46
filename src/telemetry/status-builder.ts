import { SCHEMA_VERSION } from '../protocol/topics.js';
import { StatusSchema, type Status } from '../protocol/status.js';
import type { TelemetryProviders } from './providers.js';
import type { RawSample } from './sampler.js';

const K3S_STATE = /^[a-z][a-z0-9-]{0,31}$/;

/** Turns a sample and the other parts' views into the status message, validated against its schema. */
export function buildStatus(seq: number, sample: RawSample, providers: TelemetryProviders): Status {
  const k3s = providers.k3sState();
  const link = providers.linkState();
  const outbox = providers.outboxStats();
  return StatusSchema.parse({
    schemaVersion: SCHEMA_VERSION,
    seq,
    sampledAt: sample.sampledAt.toISOString(),
    uptimeSeconds: sample.uptimeSeconds,
    cpu: { percent: sample.cpuPercent, load: sample.load, mhz: sample.cpuMhz },
    memory: sample.memory,
    disks: sample.disks.map(({ name, totalBytes, freeBytes }) => ({ name, totalBytes, freeBytes })),
    temperatureC: sample.temperatureC,
    network: sample.network,
    throttle: sample.throttle,
    k3s: {
      // A provider bug must not make every status invalid; an unexpected name is reported as "unknown".
      state: K3S_STATE.test(k3s.state) ? k3s.state : 'unknown',
      healthy: k3s.healthy,
      version: k3s.version?.slice(0, 64),
    },
    link: { connected: link.connected, since: link.since?.toISOString() },
    outbox: { depth: outbox.depth, dropped: outbox.dropped },
  });
}
