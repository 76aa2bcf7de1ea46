import type { AlertItem } from '../../protocol/hub-alerts-api.js';
import type { AlertRow } from '../db/tables.js';

/** An alerts row as the API and the webhooks show it. */
export function alertItemOf(row: AlertRow): AlertItem {
  return {
    id: Number(row.id),
    rule: row.rule as AlertItem['rule'],
    subject: row.subject,
    deviceId: row.device_id,
    rolloutId: row.rollout_id,
    severity: row.severity as AlertItem['severity'],
    state: row.state as AlertItem['state'],
    summary: row.summary,
    remedy: row.remedy,
    openedAt: new Date(row.opened_at_ms).toISOString(),
    updatedAt: new Date(row.updated_at_ms).toISOString(),
    resolvedAt: row.resolved_at_ms === null ? null : new Date(row.resolved_at_ms).toISOString(),
    details: JSON.parse(row.details_json) as Record<string, unknown>,
  };
}
