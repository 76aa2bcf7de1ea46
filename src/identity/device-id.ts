import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeviceIdUnavailableError } from './errors.js';
import { readHardwareSignal } from './hardware-signal.js';

/** Where the machine's own identity is read from; injectable so that tests never depend on the host's. */
export interface MachineSources {
  machineIdPath: string;
  /** Device-tree serial files (Raspberry Pi, most ARM boards), then /proc/cpuinfo's "Serial" line. */
  serialPaths: string[];
  cpuinfoPath: string;
  /** The firmware's product uuid (x86); readable by root only. */
  dmiProductUuidPath?: string;
  /** Network cards, for the MAC address of the first physical one when there is no DMI uuid. */
  netClassDir?: string;
}

/** The usual places, under `root` ("/" on the device; the host's root mounted elsewhere in a container or a test). */
export function machineSourcesUnder(root: string): MachineSources {
  return {
    machineIdPath: join(root, 'etc/machine-id'),
    serialPaths: [join(root, 'sys/firmware/devicetree/base/serial-number'), join(root, 'proc/device-tree/serial-number')],
    cpuinfoPath: join(root, 'proc/cpuinfo'),
    dmiProductUuidPath: join(root, 'sys/class/dmi/id/product_uuid'),
    netClassDir: join(root, 'sys/class/net'),
  };
}

export const DEFAULT_MACHINE_SOURCES: MachineSources = machineSourcesUnder('/');

/** One fingerprint per signal, so that a signal added later (or unreadable now) is not mistaken for a change. */
export interface MachineSignals {
  machineId?: string;
  serial?: string;
  /** DMI product uuid, else the MAC address of the first physical network card. */
  hardware?: string;
}
export const SIGNAL_NAMES = ['machineId', 'serial', 'hardware'] as const satisfies readonly (keyof MachineSignals)[];

export interface MachineIdentity {
  /** What the derived id comes from; undefined when there is neither a machine id nor a serial. */
  source: 'machine-id' | 'serial' | undefined;
  /** A stable id derived from the machine id and serial; the raw values are not exposed (systemd asks apps not to). */
  derivedId: string | undefined;
  /** Fingerprints of the raw values: compared across starts to notice another board, never the values themselves. */
  signals: MachineSignals;
  /** All signals in one fingerprint, as reported to the fleet and quoted back by identity.reidentify. */
  fingerprint: string;
}

export interface DeviceIdentity {
  deviceId: string;
  deviceIdSource: 'config' | 'machine-id' | 'serial';
  machine: MachineIdentity | undefined;
}

const MAX_SOURCE_BYTES = 4096;

/**
 * Reads the machine's identity from /etc/machine-id (unique per installed OS, regenerated on the first boot of a
 * properly prepared golden image) together with the board serial when there is one. Both go into the derived id,
 * so an image cloned without resetting its machine id still gives each board its own id (and the serial alone
 * serves while the machine id is "uninitialized"). The hardware signal only joins the fingerprint: adding it to the
 * derivation would change the id of every device that has one. Undefined when there is no signal at all.
 */
export function readMachineIdentity(sources: MachineSources = DEFAULT_MACHINE_SOURCES): MachineIdentity | undefined {
  const text = readSmall(sources.machineIdPath)?.trim();
  // "uninitialized" is what systemd leaves in a golden image until first boot completes.
  const machineId = text && /^[0-9a-f]{32}$/.test(text) ? text : undefined;
  const serial = boardSerial(sources);
  const hardware = readHardwareSignal(sources.dmiProductUuidPath, sources.netClassDir);
  if (!machineId && !serial && !hardware) return undefined;
  const signals: MachineSignals = {
    ...(machineId ? { machineId: signalFingerprint('machine-id', machineId) } : {}),
    ...(serial ? { serial: signalFingerprint('serial', serial) } : {}),
    ...(hardware ? { hardware: signalFingerprint('hardware', hardware) } : {}),
  };
  const derivable = machineId !== undefined || serial !== undefined;
  return {
    source: machineId ? 'machine-id' : serial ? 'serial' : undefined,
    derivedId: derivable ? `d${digest('device-id', [machineId ?? '', serial ?? ''].join('|')).slice(0, 20)}` : undefined,
    signals,
    fingerprint: combinedFingerprint(signals),
  };
}

/** One fingerprint over a set of signal fingerprints, independent of the order they were read in. */
export function combinedFingerprint(signals: MachineSignals): string {
  const parts = SIGNAL_NAMES.filter((name) => signals[name] !== undefined).map((name) => `${name}=${signals[name]}`);
  return `sha256:${digest('fingerprint', parts.join('|')).slice(0, 16)}`;
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
  if (!machine?.derivedId || !machine.source) {
    throw new DeviceIdUnavailableError(
      'no device id: set device.id in the config, or give the machine an /etc/machine-id (systemd-machine-id-setup)',
    );
  }
  return { deviceId: machine.derivedId, deviceIdSource: machine.source, machine };
}

function signalFingerprint(name: string, raw: string): string {
  return `sha256:${digest(`signal:${name}`, raw).slice(0, 16)}`;
}

function digest(purpose: string, raw: string): string {
  return createHash('sha256').update(`fleetlet:${purpose}:${raw}`).digest('hex');
}

function readSmall(path: string): string | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > MAX_SOURCE_BYTES ? undefined : text;
  } catch {
    return undefined;
  }
}
