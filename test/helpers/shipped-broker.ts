import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';

/** The broker configuration fleetlet ships for the cloud side: mutual TLS and the per-device ACL. */
export const SHIPPED_MOSQUITTO_DIR = join(REPO_ROOT, 'packaging/cloud/mosquitto');

/** The shipped mosquitto.conf, with its /etc paths pointed at the test's files (in `dir`) and its listener left to the test. */
export function shippedMosquittoConfig(dir: string): { globalLines: string[]; listenerLines: string[] } {
  const lines = readFileSync(join(SHIPPED_MOSQUITTO_DIR, 'mosquitto.conf'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .filter((line) => !/^(persistence|persistence_location|per_listener_settings)\b/.test(line))
    .map((line) => line.replaceAll('/etc/mosquitto/fleetlet/', `${dir}/`));
  const listenerAt = lines.findIndex((line) => line.startsWith('listener '));
  return { globalLines: lines.slice(0, listenerAt), listenerLines: lines.slice(listenerAt + 1) };
}
