import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DeviceIdUnavailableError } from './errors.js';

/** Where the machine's own identity is read from; injectable so that tests never depend on the host's. */
export interface MachineSources {
  machineIdPath: string;
  /** Device-tree serial files (Raspberry Pi, most ARM boards), then /proc/cpuinfo's "Serial" line. */
  serialPaths: string[];
  cpuinfoPath: string;
}

export const DEFAULT_MACHINE_SOURCES: MachineSources = {
  machineIdPath: '/etc/machine-id',
  serialPaths: ['/sys/firmware/devicetree/base/serial-number', '/proc/device-tree/serial-number'],
  cpuinfoPath: '/proc/cpuinfo',
};

export interface MachineIdentity {
  source: 'machine-id' | 'serial';
  /** Fingerprint of the raw value: compared across boots to notice a cloned image, never the value itself. */
  fingerprint: string;
  /** A stable id derived from the raw value; the raw value is not exposed (systemd asks apps not to). */
  derivedId: string;
}

export interface DeviceIdentity {
  deviceId: string;
  deviceIdSource: 'config' | MachineIdentity['source'];
  machine: MachineIdentity | undefined;
}

const MAX_SOURCE_BYTES = 4096;

/**
 * Reads the machine's identity from /etc/machine-id (unique per installed OS, regenerated on the first boot of a
 * properly prepared golden image) together with the board serial when there is one. Both go into the fingerprint
 * and the derived id, so an image cloned without resetting its machine id still gives each board its own identity
 * (and the serial alone serves while the machine id is "uninitialized"). Undefined when neither exists.
 */
export function readMachineIdentity(sources: MachineSources = DEFAULT_MACHINE_SOURCES): MachineIdentity | undefined {
  const text = readSmall(sources.machineIdPath)?.trim();
  // "uninitialized" is what systemd leaves in a golden image until first boot completes.
  const machineId = text && /^[0-9a-f]{32}$/.test(text) ? text : undefined;
  const serial = boardSerial(sources);
  if (!machineId && !serial) return undefined;
  return derive(machineId ? 'machine-id' : 'serial', [machineId ?? '', serial ?? ''].join('|'));
}

function boardSerial(sources: MachineSources): string | undefined {
  for (const path of sources.serialPaths) {
    const serial = readSmall(path)?.replace(/\0/g, '').trim().toLowerCase();
    if (serial && /^[0-9a-z-]{4,64}$/.test(serial) && !/^[0-]+$/.test(serial)) return serial;
  }
  const cpuSerial = /^Serial\s*:\s*([0-9a-fA-F]+)\s*$/m.exec(readSmall(sources.cpuinfoPath) ?? '')?.[1];
  return cpuSerial && !/^0+$/.test(cpuSerial) ? cpuSerial.toLowerCase() : undefined;
}

/** config.device.id when set, else the derived one; throws when there is nothing to derive from. */
export function resolveDeviceId(configured: string | undefined, machine: MachineIdentity | undefined): DeviceIdentity {
  if (configured) return { deviceId: configured, deviceIdSource: 'config', machine };
  if (!machine) {
    throw new DeviceIdUnavailableError(
      'no device id: set device.id in the config, or give the machine an /etc/machine-id (systemd-machine-id-setup)',
    );
  }
  return { deviceId: machine.derivedId, deviceIdSource: machine.source, machine };
}

function derive(source: MachineIdentity['source'], raw: string): MachineIdentity {
  const digest = (purpose: string) => createHash('sha256').update(`fleetlet:${purpose}:${raw}`).digest('hex');
  return { source, fingerprint: `sha256:${digest('fingerprint').slice(0, 16)}`, derivedId: `d${digest('device-id').slice(0, 20)}` };
}

function readSmall(path: string): string | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > MAX_SOURCE_BYTES ? undefined : text;
  } catch {
    return undefined;
  }
}
