import type { Config } from '../config/schema.js';
import { machineSourcesUnder, readMachineIdentity, resolveDeviceId } from '../identity/device-id.js';
import { DeviceRecordFile } from '../identity/device-record.js';
import { DeviceIdUnavailableError } from '../identity/errors.js';
import { buildAgentInvocation } from '../k3s/args.js';
import { AgentArgsError } from '../k3s/errors.js';
import { clientOptions } from '../link/client-options.js';
import { ConfigError, type ConfigProblem } from '../lib/errors.js';
import { buildEnrolmentPart } from '../identity/enrolment-part.js';
import { createLogger } from '../lib/logger.js';

/**
 * What the agent refuses at start beyond the schema, checked the way the agent checks it and said with the agent's
 * own words, so that `config check` passes only a config the agent takes: a device id it can find, TLS files it
 * can read and a client certificate issued to this device (the link), and k3s arguments it can build (the k3s
 * supervisor, which reports "k3s could not be started: <the same sentence>").
 */
export function agentStartProblems(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const deviceId = deviceIdOf(config, problems);
  if (deviceId) {
    try {
      // With enrolment the link connects with the enrolled certificate, which may not exist yet.
      const broker = config.enrolment.hubUrl ? { ...config.broker, tls: { ...config.broker.tls, certFile: undefined, keyFile: undefined } } : config.broker;
      clientOptions(broker, deviceId, { topic: 'config-check', payload: '' });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  }
  try {
    // Built, never started: it checks the fleet CA and that no hand-made certificate competes with the enrolled one.
    buildEnrolmentPart(config, { deviceId: deviceId ?? 'config-check', sink: { emit: () => {} }, logger: createLogger({ level: 'silent' }) });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  if (config.k3s.enabled) {
    try {
      buildAgentInvocation(config.k3s);
    } catch (err) {
      if (!(err instanceof AgentArgsError)) throw err;
      problems.push({ path: keyNamedBy(err.message), source: 'k3s agent arguments', message: err.message });
    }
  }
  return problems;
}

/** The id the agent would run as: the configured one, else the one it recorded, else the machine's. */
function deviceIdOf(config: Config, problems: ConfigProblem[]): string | undefined {
  if (config.device.id) return config.device.id;
  const recorded = new DeviceRecordFile(config.stateDir).load().record;
  if (recorded) return recorded.deviceId;
  try {
    return resolveDeviceId(undefined, readMachineIdentity(machineSourcesUnder(config.device.identityRoot))).deviceId;
  } catch (err) {
    if (!(err instanceof DeviceIdUnavailableError)) throw err;
    problems.push({ path: 'device.id', source: 'not set', message: err.message });
    return undefined;
  }
}

/** The k3s.* key an argument error starts with ("k3s.extraArgs: ..."), else the section. */
function keyNamedBy(message: string): string {
  return /^(k3s\.[A-Za-z]+)/.exec(message)?.[1] ?? 'k3s';
}
