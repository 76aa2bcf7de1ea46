import type { HubAlertsConfig } from '../../config/hub-alerts-schema.js';
import type { Logger } from '../../lib/logger.js';
import type { HubDatabase } from '../db/open.js';
import { AlertStore, type AlertChange } from './alert-store.js';
import { backlogOf, updateBacklogTrends } from './backlog-trend.js';
import { deviceFindings, parseStatus } from './device-rules.js';
import { DEVICE_RULES, type AlertFinding, type ExternalRule } from './finding.js';
import { pruneAlerts } from './prune.js';
import { readDeviceFacts } from './snapshot.js';
import { PeriodicRun } from '../../lib/periodic-run.js';

/**
 * The alert engine: every `intervalSeconds` it reads the fleet from the database, asks each device rule what should
 * be open, opens what is new, updates what changed and resolves what cleared. Everything it knows is in the
 * database, so a restarted hub continues, and replicas evaluating at once agree (AlertStore makes each change once).
 * Alerts about things outside the fleet's reports (a rollout halted, a certificate expiring) come through report().
 */
const PRUNE_EVERY_MS = 3_600_000;

export interface AlertEngineOptions {
  hub: HubDatabase;
  config: HubAlertsConfig;
  log: Logger;
  now?: () => number;
  /** Rules whose facts live in another part of the hub (certificates), evaluated with the device rules. */
  sources?: ExternalSource[];
}

/** The alerts one outside rule wants open now; the engine resolves that rule's other open alerts. */
export interface ExternalSource {
  rule: ExternalRule;
  findings(nowMs: number): Promise<AlertFinding[]>;
}

export interface EvaluationOutcome {
  opened: number;
  updated: number;
  resolved: number;
}

/** What another part of the hub says about an alert of its own (rollout-halted, certificate-expiring). */
export interface ExternalAlertReport {
  /** Only rules the engine does not evaluate: it would resolve a device rule's alert at its next evaluation. */
  rule: ExternalRule;
  /** e.g. `rollout:<id>`, or a device id. */
  subject: string;
  /** true: the condition holds (open or update the alert); false: it cleared (resolve it). */
  active: boolean;
  summary: string;
  details?: Record<string, unknown>;
  severity?: 'warning' | 'critical';
  remedy?: string | null;
  deviceId?: string | null;
  rolloutId?: string | null;
}

export class AlertEngine {
  private readonly store: AlertStore;
  private readonly now: () => number;
  private periodic: PeriodicRun | undefined;
  private prunedAtMs = 0;

  constructor(private readonly options: AlertEngineOptions) {
    this.now = options.now ?? Date.now;
    this.store = new AlertStore(options.hub, {
      webhooks: options.config.webhooks,
      updateEveryMs: options.config.delivery.updateEveryMinutes * 60_000,
    });
  }

  start(): void {
    this.periodic = new PeriodicRun(() => this.evaluate(), this.options.config.intervalSeconds * 1000, (err: unknown) =>
      this.options.log.error({ err: err instanceof Error ? err.message : String(err) }, 'alert evaluation failed; retried at the next interval'),
    );
    this.periodic.start();
  }

  async stop(): Promise<void> {
    await this.periodic?.stop();
  }

  /** One evaluation of every device rule; public so that a test (or a CLI) can drive it. */
  async evaluate(): Promise<EvaluationOutcome> {
    const nowMs = this.now();
    const { hub, config } = this.options;
    const devices = await readDeviceFacts(hub, config, nowMs);
    const statuses = new Map(devices.map((d) => [d.deviceId, parseStatus(d.statusJson)]));
    const trends = config.outboxBacklog.enabled
      ? await updateBacklogTrends(
          hub,
          devices.map((d) => ({ deviceId: d.deviceId, backlog: backlogOf(statuses.get(d.deviceId)), sampledAtMs: d.statusSampledAtMs })),
          config.outboxBacklog.minMessages,
        )
      : new Map();
    const sources = this.options.sources ?? [];
    const rules = [...DEVICE_RULES, ...sources.map((source) => source.rule)];
    const open = new Map((await this.store.openAlerts(rules)).map((row) => [`${row.rule}\n${row.subject}`, row]));
    const findings = devices.flatMap((device) =>
      deviceFindings({
        device,
        status: statuses.get(device.deviceId),
        backlog: trends.get(device.deviceId),
        isOpen: (rule) => open.has(`${rule}\n${device.deviceId}`),
        config,
        nowMs,
      }),
    );
    for (const source of sources) findings.push(...(await source.findings(nowMs)));
    const outcome: EvaluationOutcome = { opened: 0, updated: 0, resolved: 0 };
    for (const finding of findings) {
      const key = `${finding.rule}\n${finding.subject}`;
      const change = await this.store.apply(finding, open.get(key), nowMs);
      open.delete(key);
      if (change) outcome[change] += 1;
    }
    // What is still open was not found again: its condition cleared (or its rule was switched off).
    for (const row of open.values()) {
      if (await this.store.resolve(row.id, nowMs)) outcome.resolved += 1;
    }
    if (outcome.opened + outcome.updated + outcome.resolved > 0) this.options.log.info(outcome, 'alerts changed');
    if (nowMs - this.prunedAtMs >= PRUNE_EVERY_MS) {
      this.prunedAtMs = nowMs;
      const pruned = await pruneAlerts(hub, config.keepResolvedDays, nowMs);
      if (pruned.alerts + pruned.deliveries > 0) this.options.log.info(pruned, 'old alerts pruned');
    }
    return outcome;
  }

  /**
   * Opens, updates or resolves the alert of a rule the engine does not evaluate itself; the engine never resolves
   * those on its own, so the reporter says when the condition cleared. Returns the change made, or null.
   */
  async report(report: ExternalAlertReport): Promise<AlertChange | null> {
    const nowMs = this.now();
    const current = await this.store.openAlert(report.rule, report.subject);
    if (!report.active) return current && (await this.store.resolve(current.id, nowMs)) ? 'resolved' : null;
    const finding: AlertFinding = {
      rule: report.rule,
      subject: report.subject,
      deviceId: report.deviceId ?? null,
      rolloutId: report.rolloutId ?? null,
      severity: report.severity ?? 'critical',
      summary: report.summary,
      remedy: report.remedy ?? null,
      details: report.details ?? {},
    };
    return this.store.apply(finding, current, nowMs);
  }
}
