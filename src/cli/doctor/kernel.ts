import { existsSync, readlinkSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { type Check, type CheckResult, type DoctorContext, fail, inRoot, pass, readRootFile, warn } from './check.js';
import { isErrno } from '../../lib/errors.js';

type ModuleState = 'loaded' | 'built-in' | 'available' | 'missing';

/** overlay (the snapshotter) and br_netfilter (pod traffic through iptables) must be loaded or loadable. */
export const checkKernelModules: Check = (context) =>
  ['overlay', 'br_netfilter'].map((name): CheckResult => {
    const state = moduleState(context, name);
    if (state === 'loaded' || state === 'built-in') return pass('kernel-modules', `${name} is ${state}`);
    if (state === 'available') {
      return warn('kernel-modules', `${name} is not loaded (the fleetlet unit loads it at start)`, `sudo modprobe ${name}`);
    }
    return fail('kernel-modules', `the kernel has no ${name} module`, `install a kernel with ${name} (CONFIG_${name === 'overlay' ? 'OVERLAY_FS' : 'BRIDGE_NETFILTER'})`);
  });

/** Netfilter in the kernel is required; the host's iptables is optional (k3s brings its own). */
export const checkNetfilter: Check = (context) => {
  const nfTables = moduleState(context, 'nf_tables');
  const ipTables = readRootFile(context, 'proc/net/ip_tables_names') !== undefined ? 'loaded' : moduleState(context, 'ip_tables');
  if (nfTables === 'missing' && ipTables === 'missing') {
    return [fail('netfilter', 'the kernel has neither nf_tables nor ip_tables', 'install a kernel with CONFIG_NF_TABLES or CONFIG_IP_NF_IPTABLES')];
  }
  const kernel = nfTables !== 'missing' ? 'nf_tables' : 'ip_tables';
  const tool = iptablesBackend(context);
  if (!tool) return [pass('netfilter', `kernel has ${kernel}; no host iptables, k3s uses its bundled one`)];
  return [pass('netfilter', `kernel has ${kernel}; host iptables uses the ${tool} backend`)];
};

/** Swap makes the kubelet's memory accounting wrong; k3s starts anyway. */
export const checkSwap: Check = (context) => {
  const swaps = readRootFile(context, 'proc/swaps');
  const active = (swaps ?? '').split('\n').slice(1).filter((line) => line.trim() !== '');
  if (active.length === 0) return [pass('swap', 'swap is off')];
  const fix = readRootFile(context, 'etc/dphys-swapfile') !== undefined
    ? 'sudo dphys-swapfile swapoff && sudo systemctl disable dphys-swapfile'
    : 'sudo swapoff -a, and remove the swap entries from /etc/fstab';
  return [warn('swap', `swap is on (${active.map((line) => line.split(/\s+/)[0]).join(', ')})`, fix)];
};

/**
 * What the running kernel itself shows of a feature built into it: /lib/modules lists only what was built as a
 * module, and many board kernels (and containers, which have no /lib/modules) build overlay and br_netfilter in.
 */
const RUNNING_KERNEL_SIGNS: Record<string, (context: DoctorContext) => boolean> = {
  overlay: (context) => /^nodev\s+overlay$/m.test(readRootFile(context, 'proc/filesystems') ?? ''),
  br_netfilter: (context) => existsSync(inRoot(context, 'proc/sys/net/bridge/bridge-nf-call-iptables')),
};

function moduleState(context: DoctorContext, name: string): ModuleState {
  const loaded = readRootFile(context, 'proc/modules') ?? '';
  if (new RegExp(`^${name} `, 'm').test(loaded)) return 'loaded';
  // /sys/module lists loaded modules and the built-in ones that have parameters; /proc/modules only the former.
  if (existsSync(inRoot(context, `sys/module/${name}`)) || RUNNING_KERNEL_SIGNS[name]?.(context)) return 'built-in';
  const release = readRootFile(context, 'proc/sys/kernel/osrelease')?.trim();
  if (!release) return 'missing';
  const file = new RegExp(`/${name}\\.ko(\\.xz|\\.zst|\\.gz)?(:|$)`, 'm');
  if (file.test(readRootFile(context, `lib/modules/${release}/modules.builtin`) ?? '')) return 'built-in';
  if (file.test(readRootFile(context, `lib/modules/${release}/modules.dep`) ?? '')) return 'available';
  return 'missing';
}

/** Debian's alternatives point iptables at iptables-nft or iptables-legacy. */
function iptablesBackend(context: DoctorContext): string | undefined {
  for (const path of ['usr/sbin/iptables', 'sbin/iptables']) {
    let target = inRoot(context, path);
    for (let hops = 0; hops < 5; hops++) {
      try {
        const next = readlinkSync(target);
        target = next.startsWith('/') ? inRoot(context, next) : resolve(dirname(target), next);
      } catch (err) {
        if (isErrno(err, 'EINVAL')) {
          const name = basename(target);
          return name.includes('legacy') ? 'legacy' : name.includes('nft') ? 'nft' : name;
        }
        break;
      }
    }
  }
  return undefined;
}
