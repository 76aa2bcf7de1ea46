import type { AlertRule } from '../../protocol/hub-alerts-api.js';

/**
 * What a rule says about one subject now: the alert it wants open. A subject with no finding has its alert (of that
 * rule) resolved. The engine turns findings into rows; rules only describe.
 */
export interface AlertFinding {
  rule: AlertRule;
  /** A device id, or e.g. `rollout:<id>` for alerts reported from outside the engine. */
  subject: string;
  deviceId: string | null;
  rolloutId: string | null;
  severity: 'warning' | 'critical';
  summary: string;
  remedy: string | null;
  details: Record<string, unknown>;
}

/** The rules the engine evaluates from the database; the others are reported from outside (AlertEngine.report). */
export const DEVICE_RULES = [
  'device-offline',
  'k3s-crash-loop',
  'credential-rejected',
  'disk-low',
  'temperature-high',
  'under-voltage',
  'outbox-backlog',
  'identity-conflict',
] as const satisfies readonly AlertRule[];
export type DeviceRule = (typeof DEVICE_RULES)[number];

/** Rules other parts of the hub report through AlertEngine.report (the engine never resolves these itself). */
export type ExternalRule = Exclude<AlertRule, DeviceRule>;
