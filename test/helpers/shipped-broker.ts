import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';

/** The broker configuration fleetlet ships for the cloud side: mutual TLS and the per-device ACL. */
export const SHIPPED_MOSQUITTO_DIR = join(REPO_ROOT, 'packaging/cloud/mosquitto');

/**
 * The shipped mosquitto.conf, with its /etc paths pointed at the test's files (in `dir`) and its listeners' ports
 * left to the test (`crlfile` only with `crl: true`): `listenerLines` are the device listener's, `operatorListenerLines` the operator listener's.
 */
export function shippedMosquittoConfig(
  dir: string,
  options: { crl?: boolean } = {},
): { globalLines: string[]; listenerLines: string[]; operatorListenerLines: string[] } {
  const lines = readFileSync(join(SHIPPED_MOSQUITTO_DIR, 'mosquitto.conf'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    // mosquitto does not start without the CRL it names: only tests that write one (`crl.pem` in dir) keep the line.
    .filter((line) => options.crl || !line.startsWith('crlfile '))
    .filter((line) => !/^(persistence|persistence_location|per_listener_settings)\b/.test(line))
    .map((line) => line.replaceAll('/etc/mosquitto/fleetlet/', `${dir}/`));
  const listenerAt = lines.findIndex((line) => line.startsWith('listener '));
  const operatorAt = lines.findIndex((line, i) => i > listenerAt && line.startsWith('listener '));
  return {
    globalLines: lines.slice(0, listenerAt),
    listenerLines: lines.slice(listenerAt + 1, operatorAt < 0 ? undefined : operatorAt),
    operatorListenerLines: operatorAt < 0 ? [] : lines.slice(operatorAt + 1),
  };
}
