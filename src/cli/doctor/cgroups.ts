import { existsSync } from 'node:fs';
import { type Check, type DoctorContext, fail, inRoot, pass, readRootFile, warn } from './check.js';

const CGROUP_MEMORY_ARGS = 'cgroup_memory=1 cgroup_enable=memory';

/** k3s exits at start without the memory controller (k3s-facts §5); pids and cpuset matter to the kubelet. */
export const checkCgroups: Check = (context) => {
  const controllersV2 = readRootFile(context, 'sys/fs/cgroup/cgroup.controllers');
  if (controllersV2 !== undefined) {
    const controllers = controllersV2.trim().split(/\s+/);
    if (!controllers.includes('memory')) return [fail('cgroups', 'cgroup v2 without the memory controller: k3s will not start', memoryFix(context))];
    const missing = ['cpuset', 'pids'].filter((name) => !controllers.includes(name));
    if (missing.length > 0) {
      return [warn('cgroups', `cgroup v2 without ${missing.join(', ')}`, `enable the ${missing.join(' and ')} controllers in the kernel (CONFIG_CPUSETS, CONFIG_CGROUP_PIDS)`)];
    }
    return [pass('cgroups', 'cgroup v2 with memory, cpuset and pids controllers')];
  }
  const table = readRootFile(context, 'proc/cgroups');
  if (table === undefined) return [fail('cgroups', 'no cgroup information (/proc/cgroups is missing)', 'use a kernel with cgroups (CONFIG_CGROUPS)')];
  const enabled = new Set(
    table
      .split('\n')
      .filter((line) => !line.startsWith('#'))
      .map((line) => line.split(/\s+/))
      .filter((fields) => fields[3] === '1')
      .map((fields) => fields[0]),
  );
  if (!enabled.has('memory')) return [fail('cgroups', 'cgroup v1 without the memory controller: k3s will not start', memoryFix(context))];
  return [pass('cgroups', `cgroup v1 with the memory controller${enabled.has('cpuset') ? ' and cpuset' : ''}`)];
};

/** The exact file to edit: Raspberry Pi OS bookworm moved it to /boot/firmware; bullseye and older use /boot. */
export function memoryFix(context: DoctorContext): string {
  for (const path of ['/boot/firmware/cmdline.txt', '/boot/cmdline.txt']) {
    if (existsSync(inRoot(context, path))) {
      return `append " ${CGROUP_MEMORY_ARGS}" to the end of the single line in ${path}, then reboot`;
    }
  }
  return `add "${CGROUP_MEMORY_ARGS}" to the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub), then reboot`;
}
