import { z } from 'zod';
import { AlertItem } from './hub-alerts-api.js';
import { DeviceEnrolment } from './hub-enrolment-api.js';

/**
 * The request and response shapes of the hub's HTTP API, one zod schema each, types inferred from them: a wire
 * contract shared by the hub (src/hub/api) and the operator tools (`fleet devices|watch --hub`). The OpenAPI
 * document (src/hub/api/openapi.ts) is generated from exactly these, so a shape changes in one place. Query strings arrive as
 * text: the query schemas coerce, bound every value, and name the offending field in a 400.
 */
const MAX_LIMIT = 500;
const deviceId = z.string().min(1).max(63);
const isoTime = z.iso.datetime();
const labelPair = z
  .string()
  .max(400)
  .regex(/^[^=]+=.*$/, { error: 'expected key=value' });

/** `label` may repeat: the router passes a repeated parameter as an array, a single one as a string. */
const labelList = z
  .union([labelPair, z.array(labelPair).max(16)])
  .transform((value) => (Array.isArray(value) ? value : [value]));

export const DEVICE_SORT_KEYS = ['deviceId', 'name', 'lastSeen', 'health', 'fleetletVersion', 'k3sVersion'] as const;
export const HEALTH_VALUES = ['ok', 'warning', 'critical'] as const;
export const PRESENCE_STATES = ['online', 'offline', 'unknown'] as const;

export const DeviceListQuery = z.strictObject({
  label: labelList.optional().describe('key=value; repeat for several, all must match'),
  group: z.string().min(1).max(63).optional(),
  state: z.enum(PRESENCE_STATES).optional(),
  version: z.string().min(1).max(64).optional().describe("the device's fleetlet version"),
  k3sVersion: z.string().min(1).max(64).optional(),
  health: z.enum(HEALTH_VALUES).optional(),
  identityConflict: z.enum(['true', 'false']).optional(),
  sort: z.enum(DEVICE_SORT_KEYS).default('deviceId'),
  order: z.enum(['asc', 'desc']).default('asc'),
  limit: z.coerce.number().int().min(1).max(MAX_LIMIT).default(100),
  offset: z.coerce.number().int().min(0).max(10_000_000).default(0),
});
export type DeviceListQuery = z.output<typeof DeviceListQuery>;

export const DeviceSummary = z.object({
  deviceId: z.string(),
  name: z.string().nullable(),
  state: z.enum(PRESENCE_STATES),
  lastSeen: isoTime,
  fleetletVersion: z.string().nullable(),
  k3sVersion: z.string().nullable(),
  k3sState: z.string().nullable(),
  k3sHealthy: z.boolean().nullable(),
  health: z.string(),
  labels: z.record(z.string(), z.string()),
  groups: z.array(z.string()),
  identityConflict: z.boolean(),
  /** Figures of the newest status sample, for the fleet table; null before one arrived. */
  vitals: z
    .object({
      cpuPercent: z.number().nullable(),
      memoryUsedPercent: z.number().nullable(),
      temperatureC: z.number().nullable(),
      /** Reports of every class waiting in the device's outbox. */
      outboxBacklog: z.int().nullable(),
    })
    .nullable(),
});
export type DeviceSummary = z.infer<typeof DeviceSummary>;

export const DeviceList = z.object({
  devices: z.array(DeviceSummary),
  /** Devices matching the filter, over all pages. */
  total: z.int(),
  limit: z.int(),
  offset: z.int(),
});
export type DeviceList = z.infer<typeof DeviceList>;

export const DeviceDetail = DeviceSummary.extend({
  firstSeen: isoTime,
  presence: z.object({
    bootSequence: z.number().nullable(),
    at: isoTime.nullable(),
    reason: z.string().nullable(),
  }),
  /** The newest inventory as the device sent it (see docs/protocol.md), or null before one arrived. */
  inventory: z.record(z.string(), z.unknown()).nullable(),
  /** The newest status sample by sampledAt, as sent. */
  status: z.record(z.string(), z.unknown()).nullable(),
  statusSampledAt: isoTime.nullable(),
  fingerprints: z.array(
    z.object({ fingerprint: z.string(), firstSeen: isoTime, lastSeen: isoTime, switches: z.int() }),
  ),
  openConditions: z.array(z.object({ kind: z.string(), key: z.string(), severity: z.string(), raisedAt: isoTime })),
  identityConflictAt: isoTime.nullable(),
  /** Its certificate from the hub's CA: state, expiry, and the k3s node reported for removal when revoked. */
  enrolment: DeviceEnrolment.nullable().optional(),
});
export type DeviceDetail = z.infer<typeof DeviceDetail>;

export const HISTORY_STEPS = ['auto', 'raw', '5m', '1h'] as const;

export const HistoryQuery = z
  .strictObject({
    from: isoTime.optional().describe('default: `to` minus 24 hours'),
    to: isoTime.optional().describe('default: now'),
    step: z.enum(HISTORY_STEPS).default('auto').describe('auto: raw up to 6 hours, 5-minute rollups up to 7 days, else hourly'),
    limit: z.coerce.number().int().min(1).max(10_000).default(2000),
  })
  .refine((q) => !q.from || !q.to || Date.parse(q.from) < Date.parse(q.to), { error: 'from must be before to', path: ['from'] });
export type HistoryQuery = z.output<typeof HistoryQuery>;

export const HistoryPoint = z.object({
  /** The sample's time (raw) or the start of its bucket. */
  at: isoTime,
  samples: z.int(),
  cpuPercentAvg: z.number().nullable(),
  cpuPercentMax: z.number().nullable(),
  memoryAvailableMin: z.number().nullable(),
  temperatureCMax: z.number().nullable(),
  diskFreeMin: z.number().nullable(),
  k3sUnhealthySamples: z.int(),
  /** Bytes per second received and sent (a raw sample: since the device's previous one; a bucket: their average). */
  networkRxRateAvg: z.number().nullable(),
  networkTxRateAvg: z.number().nullable(),
});

export const History = z.object({
  deviceId: z.string(),
  step: z.enum(['raw', '5m', '1h']),
  from: isoTime,
  to: isoTime,
  points: z.array(HistoryPoint),
  /** True when more points exist in the range than `limit`: ask for a coarser step or a shorter range. */
  truncated: z.boolean(),
});
export type History = z.infer<typeof History>;

/** Events and results page backwards by id: pass the response's `nextBefore` as `before` for the next page. */
const pagedQuery = {
  device: deviceId.optional(),
  from: isoTime.optional(),
  to: isoTime.optional(),
  before: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  limit: z.coerce.number().int().min(1).max(MAX_LIMIT).default(100),
};

/** `GET /api/v1/devices/{id}/presence`: every birth and will, newest first (by receipt), paged like events. */
export const PresenceHistoryQuery = z.strictObject({
  before: pagedQuery.before,
  limit: pagedQuery.limit,
});
export type PresenceHistoryQuery = z.output<typeof PresenceHistoryQuery>;

export const PresenceEntry = z.object({
  id: z.int(),
  state: z.enum(['online', 'offline']),
  bootSequence: z.int(),
  /** 'stopped' (a clean stop) or 'connection-lost' (the broker's last will) when offline. */
  reason: z.string().nullable(),
  /** The message's time; for a last will, when the connection it ends was opened. */
  at: isoTime,
  receivedAt: isoTime,
  /** A higher boot sequence than the entry before it: fleetlet (or the whole device) restarted in between. */
  newBoot: z.boolean(),
});
export const PresenceHistory = z.object({ deviceId: z.string(), entries: z.array(PresenceEntry), nextBefore: z.int().nullable() });
export type PresenceHistory = z.infer<typeof PresenceHistory>;

export const EventsQuery = z.strictObject({
  ...pagedQuery,
  kind: z.string().min(1).max(64).optional(),
  severity: z.enum(['info', 'warning', 'critical']).optional(),
});
export type EventsQuery = z.output<typeof EventsQuery>;

export const EventItem = z.object({
  id: z.int(),
  deviceId: z.string(),
  kind: z.string(),
  key: z.string().nullable(),
  state: z.string(),
  severity: z.string(),
  message: z.string(),
  /** What a person can do about it, as the device sent it. */
  remedy: z.string().nullable(),
  occurredAt: isoTime,
  receivedAt: isoTime,
});
export const EventList = z.object({ events: z.array(EventItem), nextBefore: z.int().nullable() });
export type EventList = z.infer<typeof EventList>;

export const ResultsQuery = z.strictObject({
  ...pagedQuery,
  commandId: z.string().min(1).max(64).optional(),
  status: z.enum(['accepted', 'rejected', 'progress', 'succeeded', 'failed']).optional(),
});
export type ResultsQuery = z.output<typeof ResultsQuery>;

export const ResultItem = z.object({
  id: z.int(),
  deviceId: z.string(),
  commandId: z.string().nullable(),
  commandType: z.string().nullable(),
  status: z.string(),
  reason: z.string().nullable(),
  at: isoTime,
  receivedAt: isoTime,
  /** The result as the device sent it. */
  result: z.record(z.string(), z.unknown()),
});
export const ResultList = z.object({ results: z.array(ResultItem), nextBefore: z.int().nullable() });
export type ResultList = z.infer<typeof ResultList>;

export const AuditQuery = z.strictObject({
  before: pagedQuery.before,
  limit: pagedQuery.limit,
});
export const AuditItem = z.object({
  id: z.int(),
  at: isoTime,
  actor: z.string(),
  action: z.string(),
  target: z.string().nullable(),
  remoteAddr: z.string().nullable(),
});
export const AuditList = z.object({ entries: z.array(AuditItem), nextBefore: z.int().nullable() });
export type AuditList = z.infer<typeof AuditList>;

export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export const LoginRequest = z.strictObject({
  username: z.string().regex(USERNAME_PATTERN, { error: 'expected 1-64 of a-z 0-9 . _ -' }),
  password: z.string().min(1).max(1024),
});
export type LoginRequest = z.infer<typeof LoginRequest>;

export const ROLES = ['viewer', 'operator'] as const;
export type Role = (typeof ROLES)[number];

export const Me = z.object({
  username: z.string(),
  role: z.enum(ROLES),
  /** How the request was authenticated. */
  via: z.enum(['session', 'token']),
  expiresAt: isoTime.nullable(),
});
export type Me = z.infer<typeof Me>;

export const Ok = z.object({ ok: z.literal(true) });

export const ApiError = z.object({
  error: z.string(),
  /** The query or body field at fault, for a 400. */
  field: z.string().optional(),
});
export type ApiError = z.infer<typeof ApiError>;

/** One Server-Sent Event of /api/v1/stream; the SSE `event:` name is `type`. */
export const StreamChange = z.discriminatedUnion('type', [
  z.object({ type: z.literal('device.reported'), deviceId: z.string(), lastSeen: isoTime }),
  z.object({ type: z.literal('device.online'), deviceId: z.string(), at: isoTime }),
  z.object({ type: z.literal('device.offline'), deviceId: z.string(), at: isoTime, reason: z.string().nullable() }),
  z.object({ type: z.literal('event'), event: EventItem }),
  z.object({ type: z.literal('alert.opened'), alert: AlertItem }),
  z.object({ type: z.literal('alert.resolved'), alert: AlertItem }),
]);
export type StreamChange = z.infer<typeof StreamChange>;

export const StreamQuery = z.strictObject({ device: deviceId.optional() });

/** For routes that take no query parameters: any given is refused by name. */
export const NoQuery = z.strictObject({});
