import { arch as osArch, cpus, hostname, release, totalmem } from 'node:os';
import { SCHEMA_VERSION } from '../protocol/topics.js';
import { InventorySchema, type Inventory } from '../protocol/inventory.js';
import { parseBootTime, parseCpuinfo, parseDeviceTreeString, parseMeminfo, parseUptime } from './proc-parsers.js';
import type { SystemFacts } from './system-facts.js';
import type { SystemFiles } from './system-files.js';
import type { K3sView } from '../k3s/ports.js';

/** The parts of the inventory that come from the machine; collected once. */
export type MachineFacts = Pick<Inventory, 'hardware' | 'os' | 'bootedAt' | 'collectedAt'>;

/** Kubernetes' names for Node's process.arch values, which is what operators select images by. */
const ARCH_NAMES: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' };

/**
 * Merges the firmware's own words (device tree, /proc/cpuinfo: what a Raspberry Pi calls itself) with
 * the system facts (DMI, os-release) and, for anything still missing, Node's os module, so that the inventory is
 * complete even when those cannot be read.
 */
export function machineFacts(files: SystemFiles, facts: SystemFacts, now: Date): MachineFacts {
  const cpuinfo = parseCpuinfo(files.read('proc/cpuinfo', 64 * 1024));
  const meminfo = parseMeminfo(files.read('proc/meminfo', 8192));
  const bootSeconds =
    parseBootTime(files.read('proc/stat', 64 * 1024)) ??
    Math.floor(now.getTime() / 1000 - (parseUptime(files.read('proc/uptime', 256)) ?? 0));
  return {
    collectedAt: now.toISOString(),
    hardware: {
      model:
        parseDeviceTreeString(files.read('proc/device-tree/model', 256)) ??
        cpuinfo?.boardModel ??
        facts.model ??
        cpuinfo?.hardware ??
        'unknown',
      serial: parseDeviceTreeString(files.read('proc/device-tree/serial-number', 256)) ?? cpuinfo?.serial ?? facts.serial,
      arch: ARCH_NAMES[osArch()] ?? osArch(),
      cpuModel: facts.cpuModel ?? cpuinfo?.model ?? cpus()[0]?.model?.trim().slice(0, 128) ?? 'unknown',
      cpuCores: facts.cpuCores ?? (cpuinfo && cpuinfo.processors > 0 ? cpuinfo.processors : Math.max(1, cpus().length)),
      memoryTotalBytes: meminfo?.totalBytes ?? facts.memoryTotalBytes ?? totalmem(),
    },
    os: {
      distro: facts.distro ?? 'Linux',
      release: facts.release,
      kernel: facts.kernel ?? release().slice(0, 128),
      hostname: facts.hostname ?? hostname().slice(0, 128),
    },
    bootedAt: new Date(bootSeconds * 1000).toISOString(),
  };
}

export interface DeviceDescription {
  deviceId: string;
  name?: string;
  labels: Record<string, string>;
  groups: string[];
  fleetletVersion: string;
  /** From config; the supervisor's view wins when it knows the node name. */
  nodeName?: string;
  /** The public half of the device's seal key, for operators who seal secret arguments to it. */
  sealKey?: string;
}

const FINGERPRINT = /^[a-z0-9]+:[A-Za-z0-9+/=_-]+$/;

/** The full inventory message. Fingerprints that do not look like fingerprints are dropped, never sent. */
export function buildInventory(
  machine: MachineFacts,
  device: DeviceDescription,
  k3s: K3sView,
  fingerprints: Record<string, string>,
): Inventory {
  const identity = Object.fromEntries(
    Object.entries(fingerprints)
      .filter(([name, value]) => name.length <= 64 && value.length <= 128 && FINGERPRINT.test(value))
      .slice(0, 8),
  );
  return InventorySchema.parse({
    schemaVersion: SCHEMA_VERSION,
    deviceId: device.deviceId,
    name: device.name,
    ...machine,
    fleetletVersion: device.fleetletVersion,
    k3sVersion: k3s.version,
    nodeName: k3s.nodeName ?? device.nodeName,
    labels: device.labels,
    groups: device.groups,
    identity,
    sealKey: device.sealKey,
  });
}

/** Inventories differ for the fleet only when something but the collection time changed. */
export function sameInventory(a: Inventory | undefined, b: Inventory): boolean {
  if (!a) return false;
  return JSON.stringify({ ...a, collectedAt: '' }) === JSON.stringify({ ...b, collectedAt: '' });
}
