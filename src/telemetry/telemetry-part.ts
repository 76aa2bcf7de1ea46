import type { Heartbeat } from '../lib/heartbeat.js';
import type { Logger } from '../lib/logger.js';
import type { NewOutboxRecord, OutboxRecord } from '../store/outbox.js';
import type { Inventory } from '../protocol/inventory.js';
import type { Status } from '../protocol/status.js';
import type { ConditionDetector } from './condition-detector.js';
import type { EventGate } from './event-gate.js';
import type { Health } from './http-endpoint.js';
import { LocalEndpoint } from './http-endpoint.js';
import { StatusSocket } from './status-socket.js';
import { buildInventory, machineFacts, sameInventory, type DeviceDescription, type MachineFacts } from './inventory.js';
import { renderMetrics } from './metrics.js';
import type { TelemetryProviders } from './providers.js';
import type { Sampler } from './sampler.js';
import type { SnapshotStore } from './snapshot-store.js';
import { buildStatus } from './status-builder.js';
import type { SystemFactsSource } from './system-facts.js';
import type { SystemFiles } from './system-files.js';
import { errorMessage } from '../lib/errors.js';

export interface TelemetryOptions {
  intervalMs: number;
  sampler: Sampler;
  detector: ConditionDetector;
  events: EventGate;
  outbox: { enqueue(record: NewOutboxRecord): OutboxRecord };
  statusTopic: string;
  providers: TelemetryProviders;
  device: DeviceDescription;
  files: SystemFiles;
  facts: SystemFactsSource;
  snapshots?: SnapshotStore;
  /** The local /healthz and /metrics endpoint on 127.0.0.1; undefined turns it off. */
  http?: { port: number };
  /** The unix socket serving /status, the full view, to `fleetlet status`; undefined turns it off. */
  statusSocket?: { path: string };
  logger: Logger;
  monotonicMs?: () => number;
  /** How long the system facts may take at start before the inventory falls back to /proc and Node. */
  factsTimeoutMs?: number;
  /** Beaten after every sample that was taken and queued: the daemon's watchdog waits for it. */
  progress?: Heartbeat;
  /**
   * Take the first sample only once the sampler's CPU window is long enough (under a second after it was built), so
   * that it carries a CPU percentage like every later one. Off, start() samples at once (tests that drive samples).
   */
  firstSampleWithCpu?: boolean;
}

/** Failures in a row after which /healthz reports unhealthy (a restart may help: e.g. a wedged database). */
const FAILURES_UNHEALTHY = 5;

/**
 * The telemetry part: samples every interval, queues the status, turns transitions into events, keeps the
 * inventory current, and serves the local endpoint. Nothing here waits for the network: health means "the
 * sampling loop runs", so a device with its link down is not restarted by a watchdog for it.
 */
export class Telemetry {
  readonly name = 'telemetry';
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  private latestStatus: Status | undefined;
  private machine: MachineFacts | undefined;
  private currentInventory: Inventory | undefined;
  private readonly inventoryListeners = new Set<(inventory: Inventory) => void>();
  private readonly counters = { total: 0, failed: 0, cpuSeconds: 0 };
  private consecutiveFailures = 0;
  private lastError: string | undefined;
  private startedAtMs = 0;
  private lastTickMs: number | undefined;
  private firstTick: NodeJS.Timeout | undefined;
  private endpoint: LocalEndpoint | undefined;
  private statusSocket: StatusSocket | undefined;
  private stopped = false;
  private snapshotFailing = false;
  private readonly monotonicMs: () => number;

  constructor(private readonly options: TelemetryOptions) {
    this.monotonicMs = options.monotonicMs ?? (() => performance.now());
  }

  async start(): Promise<void> {
    this.startedAtMs = this.monotonicMs();
    const firstIn = this.options.firstSampleWithCpu ? this.options.sampler.msUntilCpuReading() : 0;
    if (firstIn === 0) this.tick();
    else this.firstTick = setTimeout(() => this.stopped || this.tick(), firstIn).unref();
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    // The daemon keeps itself alive; a timer should not keep a stopping process (or a test) running.
    this.timer.unref();
    if (this.options.http) {
      this.endpoint = new LocalEndpoint({
        port: this.options.http.port,
        health: () => this.health(),
        metrics: () => this.metricsText(),
        logger: this.options.logger,
      });
      await this.endpoint.start();
    }
    if (this.options.statusSocket) {
      this.statusSocket = new StatusSocket({
        path: this.options.statusSocket.path,
        status: () => ({ pid: process.pid, status: this.latestStatus, inventory: this.currentInventory }),
        logger: this.options.logger,
      });
      await this.statusSocket.start();
    }
    // The inventory's facts come from their own source, which may be slow or fail: the status loop does not wait.
    this.collectMachineFacts().catch((err: unknown) => this.options.logger.warn({ err }, 'could not collect the inventory'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.firstTick);
    clearInterval(this.timer);
    this.timer = undefined;
    await this.endpoint?.stop();
    await this.statusSocket?.stop();
  }

  /** The port the local endpoint listens on, when it does. */
  get httpPort(): number | undefined {
    return this.endpoint?.port;
  }

  /** Whether the status socket is being served. */
  get statusSocketListening(): boolean {
    return this.statusSocket?.listening ?? false;
  }

  latest(): Status | undefined {
    return this.latestStatus;
  }

  inventory(): Inventory | undefined {
    return this.currentInventory;
  }

  /** Called with the new inventory whenever it changes (the link publishes it, retained). */
  onInventoryChange(listener: (inventory: Inventory) => void): () => void {
    this.inventoryListeners.add(listener);
    return () => this.inventoryListeners.delete(listener);
  }

  /** One sampling round. Public so that tests and the benchmark drive it without timers. */
  tick(): Status | undefined {
    const cpuBefore = process.cpuUsage();
    this.counters.total += 1;
    try {
      const sample = this.options.sampler.sample();
      this.seq += 1;
      const status = buildStatus(this.seq, sample, this.options.providers);
      this.latestStatus = status;
      this.options.outbox.enqueue({ class: 'status', topic: this.options.statusTopic, payload: status, qos: 1 });
      for (const event of this.options.detector.evaluate(sample)) {
        this.options.events.emit({ ...event, occurredAt: sample.sampledAt });
      }
      this.options.events.flush();
      this.saveSnapshot(status);
      this.refreshInventory();
      this.consecutiveFailures = 0;
      this.options.progress?.beat();
      return status;
    } catch (err) {
      this.counters.failed += 1;
      this.consecutiveFailures += 1;
      this.lastError = errorMessage(err);
      this.options.logger.warn({ err }, 'telemetry sample failed');
      return undefined;
    } finally {
      this.lastTickMs = this.monotonicMs();
      const used = process.cpuUsage(cpuBefore);
      this.counters.cpuSeconds += (used.user + used.system) / 1e6;
    }
  }

  /**
   * The snapshot only serves `fleetlet status` while the daemon is down: failing to write it (a full disk) must not
   * fail the sample, whose status the outbox still delivers or counts as dropped. Logged once per episode.
   */
  private saveSnapshot(status: Status): void {
    try {
      this.options.snapshots?.saveStatus(status);
      this.snapshotFailing = false;
    } catch (err) {
      if (!this.snapshotFailing) this.options.logger.warn({ err }, 'could not save the status snapshot; sampling goes on');
      this.snapshotFailing = true;
    }
  }

  health(): Health {
    const now = this.monotonicMs();
    const staleAfterMs = Math.max(3 * this.options.intervalMs, this.options.intervalMs + 30_000);
    const sinceLast = now - (this.lastTickMs ?? this.startedAtMs);
    const stale = sinceLast > staleAfterMs;
    const failing = this.consecutiveFailures >= FAILURES_UNHEALTHY;
    return {
      healthy: !stale && !failing,
      detail: {
        lastSampleSecondsAgo: Math.round(sinceLast / 100) / 10,
        consecutiveFailures: this.consecutiveFailures,
        ...(failing && this.lastError ? { lastError: this.lastError.slice(0, 200) } : {}),
        // Informational only: a link that is down is not a reason to restart the agent.
        linkConnected: this.options.providers.linkState().connected,
      },
    };
  }

  metricsText(): string {
    return renderMetrics({
      status: this.latestStatus,
      events: this.options.events.stats,
      samples: this.counters,
      fleetletVersion: this.options.device.fleetletVersion,
    });
  }

  private async collectMachineFacts(): Promise<void> {
    const timeoutMs = this.options.factsTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const facts = await Promise.race([
      this.options.facts(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        timer.unref();
      }),
    ])
      .catch((err: unknown) => {
        this.options.logger.warn({ err: errorMessage(err) }, 'system facts unavailable; inventory from /proc only');
        return {};
      })
      .finally(() => clearTimeout(timer));
    // Facts that arrive after a stop would write to a closed database and wake a stopped link.
    if (this.stopped) return;
    this.machine = machineFacts(this.options.files, facts, new Date());
    try {
      this.refreshInventory();
    } catch (err) {
      this.options.logger.warn({ err }, 'could not build the inventory');
    }
  }

  private refreshInventory(): void {
    if (!this.machine) return;
    const { providers, device } = this.options;
    const inventory = buildInventory(this.machine, device, providers.k3sState(), providers.identityFingerprints());
    if (sameInventory(this.currentInventory, inventory)) return;
    this.currentInventory = inventory;
    this.options.snapshots?.saveInventory(inventory);
    for (const listener of this.inventoryListeners) {
      try {
        listener(inventory);
      } catch (err) {
        this.options.logger.warn({ err }, 'inventory listener failed');
      }
    }
  }
}
