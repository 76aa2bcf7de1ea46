import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import type { Heartbeat } from '../lib/heartbeat.js';
import type { Logger } from '../lib/logger.js';
import type { Database } from '../store/db.js';
import type { Outbox } from '../store/outbox.js';
import type { Topics } from '../protocol/topics.js';
import { ConditionDetector } from './condition-detector.js';
import { statfsDiskSpace } from './disk-space.js';
import { EventGate } from './event-gate.js';
import { DEFAULT_PROVIDERS, type TelemetryProviders } from './providers.js';
import { Sampler } from './sampler.js';
import { STATUS_SOCKET_FILE } from './status-socket.js';
import { SnapshotStore } from './snapshot-store.js';
import { fileSystemFacts } from './system-facts.js';
import { SystemFiles } from './system-files.js';
import { Telemetry } from './telemetry-part.js';

export interface TelemetryDeps {
  /** What the inventory says about the device (the `device` section, with the id the agent resolved). */
  device: { deviceId: string; name?: string; labels: Record<string, string>; groups: string[]; nodeName?: string };
  /** The state directory: its file system is sampled, and `fleetlet status` reads the status socket there. */
  stateDir: string;
  /** k3s's data directory when k3s is supervised: its file system is sampled too. */
  k3sDataDir?: string;
  topics: Topics;
  outbox: Outbox;
  /** The state database, for the snapshots `fleetlet status` shows while the daemon is stopped. */
  db?: Database;
  /** Views of the other parts; any left out reports "unknown". They are called lazily, at each sample. */
  providers: Partial<TelemetryProviders>;
  logger: Logger;
  fleetletVersion: string;
  /** Beaten at every sample taken (the watchdog's "sampler ticks"). */
  progress?: Heartbeat;
  /** The device's seal public key, published in the inventory. */
  sealKey?: string;
}

/**
 * Builds the telemetry part and the agent's event sink from the `telemetry` config section. The sink is returned on
 * its own so that the composition root can hand it to every other producer of events (the k3s supervisor...).
 */
export function buildTelemetryPart(section: Config['telemetry'], deps: TelemetryDeps): { telemetry: Telemetry; events: EventGate } {
  const { device, logger } = deps;
  const files = new SystemFiles('/');
  const events = new EventGate({ outbox: deps.outbox, topic: deps.topics.device(device.deviceId, 'events'), logger });
  const telemetry = new Telemetry({
    intervalMs: section.intervalSeconds * 1000,
    sampler: new Sampler({
      files,
      disks: [
        { name: 'state', path: deps.stateDir },
        ...(deps.k3sDataDir ? [{ name: 'k3s' as const, path: deps.k3sDataDir }] : []),
      ],
      diskSpace: statfsDiskSpace,
    }),
    detector: new ConditionDetector(),
    events,
    outbox: deps.outbox,
    statusTopic: deps.topics.device(device.deviceId, 'status'),
    providers: { ...DEFAULT_PROVIDERS, ...deps.providers },
    device: {
      deviceId: device.deviceId,
      name: device.name,
      labels: device.labels,
      groups: device.groups,
      fleetletVersion: deps.fleetletVersion,
      nodeName: device.nodeName,
      ...(deps.sealKey ? { sealKey: deps.sealKey } : {}),
    },
    files,
    facts: fileSystemFacts(files),
    snapshots: deps.db ? new SnapshotStore(deps.db) : undefined,
    http: section.http.enabled ? { port: section.http.port } : undefined,
    statusSocket: section.statusSocket.enabled ? { path: join(deps.stateDir, STATUS_SOCKET_FILE) } : undefined,
    logger: logger.child({ part: 'telemetry' }),
    ...(deps.progress ? { progress: deps.progress } : {}),
    firstSampleWithCpu: true,
  });
  return { telemetry, events };
}
