import { ALERT_RULES, type AlertRule } from '../../protocol/hub-alerts-api.js';

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

/** Rules other parts of the hub report (a rollout's state, certificates); the engine never raises these from device facts. */
const EXTERNAL_RULES = ['rollout-halted', 'certificate-expiring'] as const satisfies readonly AlertRule[];
export type ExternalRule = (typeof EXTERNAL_RULES)[number];
export type DeviceRule = Exclude<AlertRule, ExternalRule>;

/** The rules the engine evaluates from the database: every rule but the external ones. */
export const DEVICE_RULES: readonly DeviceRule[] = ALERT_RULES.filter(
  (rule): rule is DeviceRule => !(EXTERNAL_RULES as readonly AlertRule[]).includes(rule),
);
