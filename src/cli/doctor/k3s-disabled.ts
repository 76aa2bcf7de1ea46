import type { Config } from '../../config/schema.js';
import type { CheckResult } from './check.js';

/** Checks of what only k3s needs from the machine; fleetlet itself runs without any of it. */
const K3S_PREREQUISITES: ReadonlySet<string> = new Set(['cgroups', 'kernel-modules', 'netfilter', 'swap', 'node-name']);

/**
 * With k3s disabled a missing k3s prerequisite does not keep the device from being ready: it is a warning that
 * says so, kept because enabling k3s later will need it.
 */
export function withK3sDisabled(config: Config | undefined, result: CheckResult): CheckResult {
  if (config?.k3s.enabled !== false || result.status !== 'fail' || !K3S_PREREQUISITES.has(result.check)) return result;
  return { ...result, status: 'warn', summary: `${result.summary} (k3s is disabled: needed only once k3s.enabled is true)` };
}
