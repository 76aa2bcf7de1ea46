import { existsSync } from 'node:fs';
import { type Check, type CheckResult, fail, inRoot, pass, readRootFile, warn } from './check.js';

/** Hostnames that whole batches of devices share out of the box; k3s names the node after the hostname. */
const FACTORY_HOSTNAMES = new Set(['raspberrypi', 'localhost', 'debian', 'ubuntu', 'dietpi', 'orangepi', 'armbian', 'pi']);
/** k3s certificates and TLS need a plausible clock; an RTC-less Pi boots in the past until NTP answers. */
const EARLIEST_PLAUSIBLE = Date.UTC(2025, 0, 1);

export const checkClock: Check = (context) => {
  if (context.now.getTime() < EARLIEST_PLAUSIBLE) {
    return [fail('clock', `the clock says ${context.now.toISOString()}: TLS certificates will not validate`, 'sudo timedatectl set-ntp true, and check that UDP port 123 reaches an NTP server')];
  }
  // systemd-timesyncd creates this file once it has synchronized.
  if (existsSync(inRoot(context, 'run/systemd/timesync/synchronized'))) return [pass('clock', 'synchronized by systemd-timesyncd')];
  return [warn('clock', 'clock synchronization is not confirmed', 'sudo timedatectl set-ntp true (or check chronyc tracking)')];
};

/** Two nodes with one name fight over one k3s node object; the server rejects the second one's password. */
export const checkNodeName: Check = (context) => {
  const k3s = context.config?.k3s;
  if (k3s?.nodeName) return [pass('node-name', `k3s node name is set: ${k3s.nodeName}`)];
  if (k3s?.withNodeId) return [pass('node-name', 'k3s appends a per-node id to the hostname (withNodeId)')];
  const hostname = readRootFile(context, 'etc/hostname')?.trim() ?? '';
  const results: CheckResult[] = [];
  if (hostname === '' || FACTORY_HOSTNAMES.has(hostname)) {
    results.push(
      warn('node-name', `hostname "${hostname || '(none)'}" is shared by many devices and becomes the k3s node name`, 'sudo hostnamectl set-hostname <unique-name>, or set k3s.withNodeId: true'),
    );
  } else {
    results.push(pass('node-name', `hostname "${hostname}" becomes the k3s node name`));
  }
  const machineId = readRootFile(context, 'etc/machine-id')?.trim();
  if (context.image) {
    results.push(machineId
      ? fail('node-name', '/etc/machine-id is set in the image: every device flashed from it would share it', 'empty it in the image (: > /etc/machine-id) so that systemd makes one per device at first boot')
      : pass('node-name', '/etc/machine-id is empty, as an image needs: systemd makes one per device at first boot'));
  } else if (!machineId) {
    results.push(fail('node-name', '/etc/machine-id is empty: this looks like an image that was never booted', 'boot once so systemd generates it, or run systemd-machine-id-setup'));
  }
  return results;
};
