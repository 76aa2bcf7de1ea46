import { sql } from 'kysely';
import type { HubAlertsConfig } from '../../config/hub-alerts-schema.js';
import { backoffCeiling } from '../../lib/backoff.js';
import type { Logger } from '../../lib/logger.js';
import type { HubDatabase } from '../db/open.js';
import type { AlertDeliveryRow } from '../db/tables.js';
import { bumpCounter } from '../ingest/commit-batch.js';
import { postWebhook } from './webhook-post.js';
import type { WebhookTarget } from './webhook-secrets.js';
import { PeriodicRun } from '../../lib/periodic-run.js';

/**
 * Sends the queued deliveries (alert_deliveries) to their webhooks: due ones oldest first, one change of an alert at
 * a time per webhook (so "resolved" never overtakes "opened"), retried with exponential backoff and jitter (at
 * least as long as Retry-After asks), given up after hub.alerts.delivery.maxAgeHours. The queue is in the database,
 * so a restarted hub picks up where it stopped; a replica leases a delivery while it sends it, so two replicas do
 * not both send it. Counters in hub_counters (served by /metrics): delivered, failed attempts, expired.
 */
export const DELIVERY_COUNTERS = {
  delivered: 'alert_webhook_delivered_total',
  failedAttempts: 'alert_webhook_failed_attempts_total',
  expired: 'alert_webhook_expired_total',
} as const;

export interface WebhookDelivererOptions {
  hub: HubDatabase;
  targets: ReadonlyMap<string, WebhookTarget>;
  delivery: HubAlertsConfig['delivery'];
  log: Logger;
  /** How often the queue is looked at. */
  pollMs?: number;
  now?: () => number;
  random?: () => number;
}

const BATCH = 20;
/** A lease outlives the request's own timeout by this much, for the bookkeeping after it. */
const LEASE_SLACK_MS = 5_000;

export class WebhookDeliverer {
  private readonly now: () => number;
  private readonly random: () => number;
  private periodic: PeriodicRun | undefined;

  constructor(private readonly options: WebhookDelivererOptions) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  start(): void {
    if (this.options.targets.size === 0) return;
    this.periodic = new PeriodicRun(() => this.runOnce(), this.options.pollMs ?? 1000, (err: unknown) =>
      this.options.log.error({ err: err instanceof Error ? err.message : String(err) }, 'webhook delivery run failed; retried shortly'),
    );
    this.periodic.start();
  }

  async stop(): Promise<void> {
    await this.periodic?.stop();
  }

  /** Expires what is too old, then sends what is due; returns how many were sent successfully. */
  async runOnce(): Promise<number> {
    await this.expireOld();
    const due = await this.dueDeliveries();
    const outcomes = await Promise.all(due.map((delivery) => this.deliver(delivery)));
    return outcomes.filter(Boolean).length;
  }

  private async expireOld(): Promise<void> {
    const nowMs = this.now();
    const { hub } = this.options;
    await hub.db.transaction().execute(async (trx) => {
      const expired = await trx
        .updateTable('alert_deliveries')
        .set({ state: 'expired', done_at_ms: nowMs })
        .where('state', '=', 'pending')
        .where('created_at_ms', '<', nowMs - this.options.delivery.maxAgeHours * 3_600_000)
        .where('lease_until_ms', '<=', nowMs)
        .returning(['webhook', 'delivery_id', 'attempts', 'last_error'])
        .execute();
      if (expired.length === 0) return;
      await bumpCounter(trx, DELIVERY_COUNTERS.expired, expired.length);
      for (const e of expired) this.options.log.warn({ webhook: e.webhook, deliveryId: e.delivery_id, attempts: e.attempts, lastError: e.last_error }, 'alert webhook delivery given up');
    });
  }

  private async dueDeliveries(): Promise<AlertDeliveryRow[]> {
    const nowMs = this.now();
    const names = [...this.options.targets.keys()];
    return this.options.hub.db
      .selectFrom('alert_deliveries as d')
      .selectAll('d')
      .where('d.state', '=', 'pending')
      .where('d.next_attempt_at_ms', '<=', nowMs)
      .where('d.lease_until_ms', '<=', nowMs)
      .where('d.webhook', 'in', names)
      // The oldest pending change of an alert goes first, to each webhook.
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('alert_deliveries as e')
              .select(sql.lit(1).as('one'))
              .whereRef('e.alert_id', '=', 'd.alert_id')
              .whereRef('e.webhook', '=', 'd.webhook')
              .where('e.state', '=', 'pending')
              .whereRef('e.id', '<', 'd.id'),
          ),
        ),
      )
      .orderBy('d.id')
      .limit(BATCH)
      .execute();
  }

  private async deliver(delivery: AlertDeliveryRow): Promise<boolean> {
    const target = this.options.targets.get(delivery.webhook)!;
    const timeoutMs = this.options.delivery.timeoutSeconds * 1000;
    const { hub } = this.options;
    const leased = await hub.db
      .updateTable('alert_deliveries')
      .set({ lease_until_ms: this.now() + timeoutMs + LEASE_SLACK_MS })
      .where('id', '=', delivery.id)
      .where('state', '=', 'pending')
      .where('lease_until_ms', '=', delivery.lease_until_ms)
      .executeTakeFirst();
    if (Number(leased.numUpdatedRows) !== 1) return false; // another replica took it
    const outcome = await postWebhook(target, { deliveryId: delivery.delivery_id, event: delivery.event, body: delivery.body }, timeoutMs, this.now);
    const nowMs = this.now();
    const attempts = delivery.attempts + 1;
    await hub.db.transaction().execute(async (trx) => {
      if (outcome.ok) {
        await trx
          .updateTable('alert_deliveries')
          .set({ state: 'delivered', attempts, done_at_ms: nowMs, lease_until_ms: 0, last_error: null })
          .where('id', '=', delivery.id)
          .execute();
        await bumpCounter(trx, DELIVERY_COUNTERS.delivered, 1);
        return;
      }
      await trx
        .updateTable('alert_deliveries')
        .set({ attempts, next_attempt_at_ms: nowMs + this.retryDelayMs(attempts, outcome.retryAfterMs), lease_until_ms: 0, last_error: outcome.error ?? 'failed' })
        .where('id', '=', delivery.id)
        .execute();
      await bumpCounter(trx, DELIVERY_COUNTERS.failedAttempts, 1);
    });
    if (!outcome.ok) this.options.log.warn({ webhook: delivery.webhook, deliveryId: delivery.delivery_id, attempts, error: outcome.error }, 'alert webhook delivery failed; will retry');
    return outcome.ok;
  }

  /** Exponential from firstRetrySeconds, the upper half jittered; never sooner than Retry-After; never beyond maxRetrySeconds. */
  retryDelayMs(attempts: number, retryAfterMs: number | undefined): number {
    const { firstRetrySeconds, maxRetrySeconds } = this.options.delivery;
    const capMs = maxRetrySeconds * 1000;
    const ceiling = backoffCeiling(attempts - 1, { baseMs: firstRetrySeconds * 1000, capMs });
    const jittered = Math.floor(ceiling / 2 + this.random() * (ceiling / 2));
    return Math.min(capMs, Math.max(jittered, retryAfterMs ?? 0));
  }
}
