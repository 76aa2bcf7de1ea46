import type { HubAlertsConfig } from '../../config/hub-alerts-schema.js';
import { eventKindSpec } from '../../protocol/event.js';
import type { Status } from '../../protocol/status.js';
import type { AlertFinding, DeviceRule } from './finding.js';
import type { DeviceFacts } from './snapshot.js';
import type { BacklogTrend } from './backlog-trend.js';

/**
 * The device rules as pure functions of what the database holds: each returns the finding for one device, or
 * nothing when its condition does not hold. Thresholds come from hub.alerts; remedies from the event table where
 * the device has one for the same trouble.
 */
type Finding = Omit<AlertFinding, 'rule' | 'subject' | 'deviceId' | 'rolloutId'>;

export interface RuleInput {
  device: DeviceFacts;
  /** The newest status, parsed; undefined before any. */
  status: Status | undefined;
  backlog: BacklogTrend | undefined;
  /** Whether this device's alert of a rule is open now: thresholds with a margin clear further away than they raise. */
  isOpen: (rule: DeviceRule) => boolean;
  config: HubAlertsConfig;
  nowMs: number;
}

const MINUTE = 60_000;
const iso = (ms: number) => new Date(ms).toISOString();

function offline({ device, config, nowMs }: RuleInput): Finding | undefined {
  if (device.presenceState !== 'offline' || device.presenceAtMs === null) return undefined;
  const minutes = Math.floor((nowMs - device.presenceAtMs) / MINUTE);
  if (nowMs - device.presenceAtMs < config.offline.afterMinutes * MINUTE) return undefined;
  return {
    severity: 'warning',
    summary: `offline for ${minutes} minute${minutes === 1 ? '' : 's'}`,
    remedy: 'check the device\'s power and network; it reconnects by itself once it reaches the broker',
    details: { offlineSince: iso(device.presenceAtMs), minutesOffline: minutes, reason: device.presenceReason },
  };
}

/** A k3s event within its window with no `k3s.up` after it: k3s has not recovered since. */
function newestUnrecovered(device: DeviceFacts, kinds: readonly string[], windowMinutes: number, nowMs: number) {
  const up = device.newestEvents.get('k3s.up')?.occurredAtMs ?? -Infinity;
  let newest: { kind: string; occurredAtMs: number; message: string } | undefined;
  for (const kind of kinds) {
    const event = device.newestEvents.get(kind);
    if (event && event.occurredAtMs > up && event.occurredAtMs >= nowMs - windowMinutes * MINUTE && (!newest || event.occurredAtMs > newest.occurredAtMs)) {
      newest = { kind, ...event };
    }
  }
  return newest;
}

function crashLoop({ device, config, nowMs }: RuleInput): Finding | undefined {
  const event = newestUnrecovered(device, ['k3s.crash-loop'], config.crashLoop.windowMinutes, nowMs);
  if (!event) return undefined;
  return {
    severity: 'critical',
    summary: event.message,
    remedy: eventKindSpec('k3s.crash-loop').remedy ?? null,
    details: { lastAt: iso(event.occurredAtMs) },
  };
}

function credentialRejected({ device, config, nowMs }: RuleInput): Finding | undefined {
  const event = newestUnrecovered(device, ['k3s.password-rejected', 'k3s.token-rejected'], config.credentialRejected.windowMinutes, nowMs);
  if (!event) return undefined;
  const kind = event.kind as 'k3s.password-rejected' | 'k3s.token-rejected';
  return {
    severity: 'critical',
    summary: eventKindSpec(kind).sentence,
    remedy: eventKindSpec(kind).remedy ?? null,
    details: { kind, lastAt: iso(event.occurredAtMs) },
  };
}

function diskLow({ device, status, config, isOpen }: RuleInput): Finding | undefined {
  const line = config.diskLow.minFreePercent + (isOpen('disk-low') ? config.diskLow.clearMarginPercent : 0);
  const low = (status?.disks ?? [])
    .filter((d) => d.totalBytes > 0)
    .map((d) => ({ ...d, freePercent: (d.freeBytes / d.totalBytes) * 100 }))
    .filter((d) => d.freePercent < line)
    .sort((a, b) => a.freePercent - b.freePercent)[0];
  const raised = device.conditions.get('disk.low');
  if (!low && !raised) return undefined;
  const remedy = eventKindSpec('disk.low').remedy ?? null;
  if (!low) return { severity: 'warning', summary: `the device reports little free space on ${raised!.join(', ') || 'a filesystem'}`, remedy, details: { raised: raised! } };
  return {
    severity: 'warning',
    summary: `filesystem ${low.name} has ${Math.floor(low.freePercent)}% free (alert below ${config.diskLow.minFreePercent}%)`,
    remedy,
    details: { disk: low.name, freePercent: Math.round(low.freePercent * 10) / 10, freeBytes: low.freeBytes, totalBytes: low.totalBytes },
  };
}

function temperatureHigh({ device, status, config, isOpen }: RuleInput): Finding | undefined {
  const c = status?.temperatureC;
  const line = config.temperatureHigh.aboveC - (isOpen('temperature-high') ? config.temperatureHigh.clearMarginC : 0);
  const hot = c !== undefined && c >= line;
  if (!hot && !device.conditions.has('temperature.high')) return undefined;
  return {
    severity: 'warning',
    summary: hot ? `SoC at ${Math.round(c)} °C (alert at ${config.temperatureHigh.aboveC} °C)` : 'the device reports its SoC is hot',
    remedy: eventKindSpec('temperature.high').remedy ?? null,
    details: { temperatureC: c ?? null, aboveC: config.temperatureHigh.aboveC },
  };
}

function underVoltage({ device, status }: RuleInput): Finding | undefined {
  const now = status?.throttle?.now.includes('under-voltage') ?? false;
  if (!now && !device.conditions.has('power.under-voltage')) return undefined;
  return {
    severity: 'critical',
    summary: eventKindSpec('power.under-voltage').sentence,
    remedy: eventKindSpec('power.under-voltage').remedy ?? null,
    details: { throttleBits: status?.throttle?.bits ?? null },
  };
}

function outboxBacklog({ backlog, config }: RuleInput): Finding | undefined {
  if (!backlog) return undefined;
  const spanMs = backlog.lastMs - backlog.sinceMs;
  if (spanMs < config.outboxBacklog.risingMinutes * MINUTE || backlog.lastValue <= backlog.sinceValue) return undefined;
  const minutes = Math.floor(spanMs / MINUTE);
  return {
    severity: 'warning',
    summary: `outbox backlog of ${backlog.lastValue} messages, up from ${backlog.sinceValue} over ${minutes} minutes`,
    remedy: 'the device reports faster than it can send: check its link to the broker (`fleetlet doctor` on the device) and the broker\'s load',
    details: { backlog: backlog.lastValue, since: iso(backlog.sinceMs), sinceBacklog: backlog.sinceValue },
  };
}

function identityConflict({ device }: RuleInput): Finding | undefined {
  if (!device.identityConflict) return undefined;
  return {
    severity: 'critical',
    summary: 'two machines present this device id (a cloned image?)',
    remedy: `${eventKindSpec('identity.fingerprint-changed').remedy ?? ''}; then clear the flag (DELETE /api/v1/devices/<id>/identity-conflict)`,
    details: { since: device.identityConflictAtMs === null ? null : iso(device.identityConflictAtMs) },
  };
}

const RULES: Record<DeviceRule, { enabled: (c: HubAlertsConfig) => boolean; find: (input: RuleInput) => Finding | undefined }> = {
  'device-offline': { enabled: (c) => c.offline.enabled, find: offline },
  'k3s-crash-loop': { enabled: (c) => c.crashLoop.enabled, find: crashLoop },
  'credential-rejected': { enabled: (c) => c.credentialRejected.enabled, find: credentialRejected },
  'disk-low': { enabled: (c) => c.diskLow.enabled, find: diskLow },
  'temperature-high': { enabled: (c) => c.temperatureHigh.enabled, find: temperatureHigh },
  'under-voltage': { enabled: (c) => c.underVoltage.enabled, find: underVoltage },
  'outbox-backlog': { enabled: (c) => c.outboxBacklog.enabled, find: outboxBacklog },
  'identity-conflict': { enabled: (c) => c.identityConflict.enabled, find: identityConflict },
};

/** Every enabled rule's finding for one device. */
export function deviceFindings(input: RuleInput): AlertFinding[] {
  const findings: AlertFinding[] = [];
  for (const [rule, { enabled, find }] of Object.entries(RULES) as [DeviceRule, (typeof RULES)[DeviceRule]][]) {
    if (!enabled(input.config)) continue;
    const finding = find(input);
    if (finding) findings.push({ rule, subject: input.device.deviceId, deviceId: input.device.deviceId, rolloutId: null, ...finding });
  }
  return findings;
}

/** devices.status_json was validated on receipt; a row that no longer parses counts as no status. */
export function parseStatus(json: string | null): Status | undefined {
  if (json === null) return undefined;
  try {
    return JSON.parse(json) as Status;
  } catch {
    return undefined;
  }
}
