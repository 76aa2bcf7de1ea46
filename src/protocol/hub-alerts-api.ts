import { z } from 'zod';

/**
 * The hub's alerts as its API and dashboard show them, one zod schema each: the contract between the alert engine
 * (src/hub/alerts) and its readers (the dashboard, `fleet alerts --hub`). An alert is one row per (rule, subject)
 * while open: raised once, updated while the condition lasts, resolved by the engine when it clears.
 */
/** The most alerts one page of the API holds. */
export const ALERTS_MAX_LIMIT = 500;
const isoTime = z.iso.datetime();

export const ALERT_RULES = [
  'device-offline',
  'k3s-crash-loop',
  'credential-rejected',
  'disk-low',
  'temperature-high',
  'under-voltage',
  'outbox-backlog',
  'identity-conflict',
  'rollout-halted',
  'certificate-expiring',
] as const;
export type AlertRule = (typeof ALERT_RULES)[number];

export const ALERT_STATES = ['open', 'resolved'] as const;
export const ALERT_SEVERITIES = ['warning', 'critical'] as const;

export const AlertItem = z.object({
  id: z.int(),
  rule: z.enum(ALERT_RULES),
  /** What the alert is about: a device id, or `rollout:<id>` for a rollout. */
  subject: z.string(),
  deviceId: z.string().nullable(),
  rolloutId: z.string().nullable(),
  severity: z.enum(ALERT_SEVERITIES),
  state: z.enum(ALERT_STATES),
  /** One sentence an operator reads first, e.g. "offline for 17 minutes". */
  summary: z.string(),
  /** What to do about it, or null when the rule has no general remedy. */
  remedy: z.string().nullable(),
  openedAt: isoTime,
  updatedAt: isoTime,
  resolvedAt: isoTime.nullable(),
  /** The figures behind the alert (minutes offline, free bytes, backlog, ...), by rule. */
  details: z.record(z.string(), z.unknown()),
});
export type AlertItem = z.infer<typeof AlertItem>;

export const AlertsQuery = z.strictObject({
  state: z.enum(ALERT_STATES).optional(),
  rule: z.enum(ALERT_RULES).optional(),
  device: z.string().min(1).max(63).optional(),
  before: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  limit: z.coerce.number().int().min(1).max(ALERTS_MAX_LIMIT).default(100),
});
export type AlertsQuery = z.output<typeof AlertsQuery>;

/** Newest first; pass `nextBefore` as `before` for the next page. `open` counts all open alerts, for the page's header. */
export const AlertList = z.object({ alerts: z.array(AlertItem), nextBefore: z.int().nullable(), open: z.int() });
export type AlertList = z.infer<typeof AlertList>;

export const ALERT_WEBHOOK_EVENTS = ['opened', 'updated', 'resolved'] as const;

/**
 * The body POSTed to a webhook (hub.alerts.webhooks) for each change of an alert. Signed: the header
 * `X-Fleetlet-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with the webhook's key; `X-Fleetlet-Delivery`
 * carries `deliveryId`, the same on every retry of one change.
 */
export const AlertWebhookPayload = z.object({
  schemaVersion: z.literal(1),
  deliveryId: z.string(),
  event: z.enum(ALERT_WEBHOOK_EVENTS),
  alert: AlertItem,
});
export type AlertWebhookPayload = z.infer<typeof AlertWebhookPayload>;
