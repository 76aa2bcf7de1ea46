import { z } from 'zod';
import { absolutePath } from './absolute-path.js';
import { ALERT_RULES } from '../protocol/hub-alerts-api.js';

/**
 * `hub.alerts`: the rules the hub's alert engine evaluates against what devices reported, and the webhooks it tells.
 * Durations are minutes and may be fractions (0.5 is 30 s). Every rule can be switched off on its own.
 */

const minutes = (fallback: number, what: string) => z.number().min(0.01).max(7 * 24 * 60).default(fallback).describe(what);
const enabled = (what: string) => z.boolean().default(true).describe(what);

const Webhook = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, { error: 'expected 1-64 of A-Z a-z 0-9 _ -' })
    .describe('Names the webhook in the delivery queue and the logs (the URL may hold a secret, so it is never logged).'),
  url: z
    .url({ protocol: /^https?$/ })
    .max(2048)
    .describe('Where alert changes are POSTed as JSON.'),
  secretFile: absolutePath.describe('File (mode 0600) holding the HMAC-SHA256 key; the body is signed in X-Fleetlet-Signature: sha256=<hex>.'),
  rules: z
    .array(z.enum(ALERT_RULES))
    .max(ALERT_RULES.length)
    .optional()
    .describe('Only alerts of these rules are sent here; all when unset.'),
});

export const HubAlertsSection = z
  .strictObject({
    enabled: enabled('Run the alert engine and the webhook deliveries in this replica.'),
    intervalSeconds: z.number().min(1).max(3600).default(15).describe('Seconds between evaluations of the rules (from the database, in every replica).'),
    offline: z
      .strictObject({
        enabled: enabled('Alert on devices offline too long.'),
        afterMinutes: minutes(10, 'A device offline (its last will or a clean stop) longer than this opens an alert.'),
      })
      .prefault({}),
    crashLoop: z
      .strictObject({
        enabled: enabled('Alert on a k3s.crash-loop event.'),
        windowMinutes: minutes(30, 'The alert stays open this long after the newest crash-loop event, unless k3s reports up after it.'),
      })
      .prefault({}),
    credentialRejected: z
      .strictObject({
        enabled: enabled('Alert on k3s.password-rejected and k3s.token-rejected events.'),
        windowMinutes: minutes(30, 'The alert stays open this long after the newest rejection, unless k3s reports up after it.'),
      })
      .prefault({}),
    diskLow: z
      .strictObject({
        enabled: enabled('Alert on little free disk (state or k3s filesystem), or a disk.low condition the device raised.'),
        minFreePercent: z.number().min(0).max(100).default(10).describe('A filesystem with less free space than this share opens an alert.'),
        clearMarginPercent: z.number().min(0).max(50).default(2).describe('An open alert resolves only once the free share is this much above minFreePercent, so a disk hovering at the line does not flap.'),
      })
      .prefault({}),
    temperatureHigh: z
      .strictObject({
        enabled: enabled('Alert on a hot SoC, or a temperature.high condition the device raised.'),
        aboveC: z.number().min(0).max(200).default(80).describe('A status temperature at or above this opens an alert.'),
        clearMarginC: z.number().min(0).max(50).default(5).describe('An open alert resolves only below aboveC minus this, so a temperature hovering at the line does not flap.'),
      })
      .prefault({}),
    underVoltage: z
      .strictObject({ enabled: enabled('Alert while the Raspberry Pi firmware reports under-voltage (status throttle flags or a raised condition).') })
      .prefault({}),
    outboxBacklog: z
      .strictObject({
        enabled: enabled('Alert on a device whose outbox backlog keeps growing (it cannot send as fast as it reports).'),
        minMessages: z.int().min(1).max(100_000_000).default(1000).describe('Backlogs (status + event + result) below this never alert.'),
        risingMinutes: minutes(15, 'The backlog must have stayed above minMessages and grown over this long (by the device\'s sample times).'),
      })
      .prefault({}),
    identityConflict: z.strictObject({ enabled: enabled('Alert on a device id presented by two machines (a cloned image).') }).prefault({}),
    certificateExpiring: z
      .strictObject({
        enabled: enabled("Alert on an enrolled device's certificate near or past its expiry (hub.enrolment)."),
        withinDays: z
          .number()
          .min(0.01)
          .max(365)
          .default(7)
          .describe('A device certificate ending within this many days opens an alert; devices renew at two thirds of its life, so one this close did not renew.'),
      })
      .prefault({}),
    keepResolvedDays: z.int().min(1).max(3650).default(90).describe('Days a resolved alert (and its deliveries) is kept.'),
    webhooks: z.array(Webhook).max(20).default([]).describe('Receivers of alert changes (opened, updated, resolved), each a JSON POST signed with HMAC-SHA256.'),
    delivery: z
      .strictObject({
        timeoutSeconds: z.number().min(0.1).max(120).default(10).describe('A webhook request (connect to the end of the response) is abandoned after this long.'),
        firstRetrySeconds: z.number().min(0.01).max(3600).default(5).describe('The first retry waits about this long; each next one twice as long, with jitter.'),
        maxRetrySeconds: z.number().min(0.01).max(86_400).default(900).describe('No retry waits longer than this (also when Retry-After asks for more).'),
        maxAgeHours: z.number().min(0.0001).max(24 * 30).default(24).describe('A delivery not made within this long is given up (counted in /metrics).'),
        updateEveryMinutes: minutes(60, 'An open alert whose summary changed is sent as "updated" at most this often.'),
      })
      .prefault({}),
  })
  .prefault({});

export type HubAlertsConfig = z.output<typeof HubAlertsSection>;
export type AlertWebhookConfig = HubAlertsConfig['webhooks'][number];
