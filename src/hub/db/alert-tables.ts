import type { Generated, Selectable } from 'kysely';

/** The tables of the alert engine and its webhook queue, part of HubTables (tables.ts), same conventions. */

/** One row per alert: open while its condition lasts (at most one open per rule and subject), then resolved. */
export interface AlertsTable {
  id: Generated<number>;
  /** One of ALERT_RULES (protocol/hub-alerts-api.ts). */
  rule: string;
  /** A device id, or `rollout:<id>` and the like for alerts reported from outside the engine. */
  subject: string;
  device_id: string | null;
  rollout_id: string | null;
  severity: string;
  /** 'open' | 'resolved' */
  state: string;
  summary: string;
  remedy: string | null;
  details_json: string;
  opened_at_ms: number;
  updated_at_ms: number;
  resolved_at_ms: number | null;
  /** When webhooks were last told about it (opened or updated), to space out "updated" deliveries. */
  notified_at_ms: number;
}

/** The webhook queue: one row per alert change and webhook, kept after delivery (bounded by the alerts' own life). */
export interface AlertDeliveriesTable {
  id: Generated<number>;
  /** Sent as X-Fleetlet-Delivery; the same on every retry, so a receiver can drop a repeat. */
  delivery_id: string;
  alert_id: number;
  /** The webhook's name in hub.alerts.webhooks. */
  webhook: string;
  /** 'opened' | 'updated' | 'resolved' */
  event: string;
  /** The exact JSON body, signed on every attempt. */
  body: string;
  /** 'pending' | 'delivered' | 'expired' */
  state: string;
  attempts: number;
  created_at_ms: number;
  next_attempt_at_ms: number;
  /** A replica sending it holds it until then, so two replicas do not send it at once. */
  lease_until_ms: number;
  last_error: string | null;
  done_at_ms: number | null;
}

/** What a rule that needs a trend (the outbox backlog) remembers per subject between evaluations. */
export interface AlertTracksTable {
  rule: string;
  subject: string;
  /** When the current rise began (device sample time) and the value then. */
  since_ms: number;
  since_value: number;
  last_ms: number;
  last_value: number;
}

export type AlertRow = Selectable<AlertsTable>;
export type AlertDeliveryRow = Selectable<AlertDeliveriesTable>;
