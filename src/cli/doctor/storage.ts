import { existsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { type Check, type CheckResult, type DoctorContext, fail, inRoot, pass, warn } from './check.js';

const GiB = 1024 ** 3;
/** k3s unpacks ~250 MB of binaries and pulls images; the outbox needs a few tens of MB. */
const FAIL_BELOW = 1 * GiB;
const WARN_BELOW = 4 * GiB;

/** Free space where the state database and k3s's data dir live. */
export const checkDisk: Check = (context) => {
  const config = context.config;
  const dirs = [config?.stateDir ?? '/var/lib/fleetlet'];
  if (config?.k3s.enabled !== false) dirs.push(config?.k3s.dataDir ?? '/var/lib/rancher/k3s');
  return dirs.map((dir) => diskResult(context, dir));
};

function diskResult(context: DoctorContext, dir: string): CheckResult {
  const free = context.freeBytes(existingAncestor(inRoot(context, dir)));
  const shown = `${(free / GiB).toFixed(1)} GiB free for ${dir}`;
  const fix = `free space on the filesystem of ${dir} (e.g. sudo journalctl --vacuum-size=100M; remove unused images with k3s crictl rmi --prune)`;
  if (free < FAIL_BELOW) return fail('disk', `${shown}: less than 1 GiB`, fix);
  if (free < WARN_BELOW) return warn('disk', `${shown}: less than 4 GiB`, fix);
  return pass('disk', shown);
}

function existingAncestor(path: string): string {
  let current = path;
  while (!existsSync(current) && dirname(current) !== current) current = dirname(current);
  return current;
}

/** The state dir holds the queue and the device's keys: only its owner may enter it. */
export const checkStateDir: Check = (context) => {
  const dir = context.config?.stateDir ?? '/var/lib/fleetlet';
  const path = inRoot(context, dir);
  if (!existsSync(path)) return [pass('state-dir', `${dir} does not exist yet; fleetlet creates it with mode 0700`)];
  const stat = statSync(path);
  if (!stat.isDirectory()) return [fail('state-dir', `${dir} is not a directory`, `sudo mv ${dir} ${dir}.bak`)];
  const mode = stat.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    return [fail('state-dir', `${dir} has mode ${mode.toString(8)}: others can read the queue and the device keys`, `sudo chmod 700 ${dir}`)];
  }
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    return [warn('state-dir', `${dir} is owned by uid ${stat.uid}, not by the user running fleetlet (${uid})`, `sudo chown -R root:root ${dir}`)];
  }
  return [pass('state-dir', `${dir} is private (mode ${mode.toString(8)})`)];
};
