import { randomUUID } from 'node:crypto';
import { sql, type Transaction } from 'kysely';
import type { AlertWebhookConfig } from '../../config/hub-alerts-schema.js';
import type { AlertRule, AlertWebhookPayload } from '../../protocol/hub-alerts-api.js';
import type { HubDatabase } from '../db/open.js';
import type { AlertRow, HubTables } from '../db/tables.js';
import { alertItemOf } from './alert-item.js';
import type { AlertFinding } from './finding.js';

/**
 * Opens, updates and resolves alerts rows, and queues one webhook delivery per change and webhook in the same
 * transaction (a change is never told twice, nor lost). Each transaction starts with its write, the one that decides
 * whether this replica made the change (the partial unique index for an open, `state = 'open'` for an update or a
 * resolve): on SQLite that also takes the write lock first, so two processes cannot deadlock on an upgrade.
 */
export type AlertChange = 'opened' | 'updated' | 'resolved';

export interface AlertStoreOptions {
  webhooks: readonly AlertWebhookConfig[];
  /** An open alert whose summary or severity changed is sent as "updated" at most this often. */
  updateEveryMs: number;
}

const MAX_SUMMARY = 500;
const MAX_DETAILS_BYTES = 8192;

export class AlertStore {
  constructor(
    private readonly hub: HubDatabase,
    private readonly options: AlertStoreOptions,
  ) {}

  async openAlerts(rules: readonly string[]): Promise<AlertRow[]> {
    if (rules.length === 0) return [];
    return this.hub.db.selectFrom('alerts').selectAll().where('state', '=', 'open').where('rule', 'in', rules).execute();
  }

  async openAlert(rule: AlertRule, subject: string): Promise<AlertRow | undefined> {
    return this.hub.db.selectFrom('alerts').selectAll().where('state', '=', 'open').where('rule', '=', rule).where('subject', '=', subject).executeTakeFirst();
  }

  /** Opens the finding's alert, or updates `current` (the open one the caller read); null when nothing changed. */
  async apply(finding: AlertFinding, current: AlertRow | undefined, nowMs: number): Promise<AlertChange | null> {
    const summary = finding.summary.slice(0, MAX_SUMMARY);
    const details = boundedDetails(finding.details);
    if (!current) return this.open(finding, summary, details, nowMs);
    if (current.summary === summary && current.details_json === details && current.severity === finding.severity && current.remedy === finding.remedy) {
      return null;
    }
    const tell = (current.summary !== summary || current.severity !== finding.severity) && nowMs - current.notified_at_ms >= this.options.updateEveryMs;
    return this.hub.db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('alerts')
        .set({ summary, details_json: details, severity: finding.severity, remedy: finding.remedy, updated_at_ms: nowMs, ...(tell ? { notified_at_ms: nowMs } : {}) })
        .where('id', '=', current.id)
        .where('state', '=', 'open')
        // Only the replica that moves notified_at_ms on tells the webhooks.
        .where('notified_at_ms', '=', current.notified_at_ms)
        .returningAll()
        .executeTakeFirst();
      if (!updated) return null;
      if (tell) await this.enqueue(trx, updated, 'updated', nowMs);
      return 'updated';
    });
  }

  private async open(finding: AlertFinding, summary: string, details: string, nowMs: number): Promise<AlertChange | null> {
    return this.hub.db.transaction().execute(async (trx) => {
      const opened = await trx
        .insertInto('alerts')
        .values({
          rule: finding.rule,
          subject: finding.subject,
          device_id: finding.deviceId,
          rollout_id: finding.rolloutId,
          severity: finding.severity,
          state: 'open',
          summary,
          remedy: finding.remedy,
          details_json: details,
          opened_at_ms: nowMs,
          updated_at_ms: nowMs,
          resolved_at_ms: null,
          notified_at_ms: nowMs,
        })
        // The partial index alerts_open_once: another replica opened it first, and tells about it.
        .onConflict((oc) => oc.columns(['rule', 'subject']).where(sql.ref('state'), '=', sql.lit('open')).doNothing())
        .returningAll()
        .executeTakeFirst();
      if (!opened) return null;
      await this.enqueue(trx, opened, 'opened', nowMs);
      return 'opened';
    });
  }

  /** Resolves an open alert; false when it was resolved already (by another replica). */
  async resolve(id: number, nowMs: number): Promise<boolean> {
    return this.hub.db.transaction().execute(async (trx) => {
      const resolved = await trx
        .updateTable('alerts')
        .set({ state: 'resolved', resolved_at_ms: nowMs, updated_at_ms: nowMs })
        .where('id', '=', id)
        .where('state', '=', 'open')
        .returningAll()
        .executeTakeFirst();
      if (!resolved) return false;
      await this.enqueue(trx, resolved, 'resolved', nowMs);
      return true;
    });
  }

  private async enqueue(trx: Transaction<HubTables>, row: AlertRow, event: AlertChange, nowMs: number): Promise<void> {
    const alert = alertItemOf(row);
    for (const webhook of this.options.webhooks) {
      if (webhook.rules && !webhook.rules.includes(alert.rule)) continue;
      const deliveryId = randomUUID();
      const payload: AlertWebhookPayload = { schemaVersion: 1, deliveryId, event, alert };
      await trx
        .insertInto('alert_deliveries')
        .values({
          delivery_id: deliveryId,
          alert_id: alert.id,
          webhook: webhook.name,
          event,
          body: JSON.stringify(payload),
          state: 'pending',
          attempts: 0,
          created_at_ms: nowMs,
          next_attempt_at_ms: nowMs,
          lease_until_ms: 0,
          last_error: null,
          done_at_ms: null,
        })
        .execute();
    }
  }
}

/** Details are figures, small by design; a caller that passes something huge gets it cut, not stored. */
function boundedDetails(details: Record<string, unknown>): string {
  const json = JSON.stringify(details);
  return json.length <= MAX_DETAILS_BYTES ? json : JSON.stringify({ truncated: true });
}
