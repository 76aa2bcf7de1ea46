import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { DeviceIdSchema } from '../protocol/ids.js';
import { writeFileAtomic } from '../lib/files.js';
import { combinedFingerprint, resolveDeviceId, SIGNAL_NAMES, type MachineIdentity, type MachineSignals } from './device-id.js';
import { errorReason, isErrno } from '../lib/errors.js';

/**
 * The device id, recorded once with the fingerprints of the machine it was recorded on. It is a file of its own in
 * the state directory, not a database row, so that a database moved aside after corruption does not take the id
 * along: the id is what the client certificate and the fleet know this device by.
 */
export const DEVICE_RECORD_FILE = 'device-identity.json';

const SignalFingerprint = z.string().regex(/^sha256:[0-9a-f]{16}$/);

export const DeviceRecordSchema = z.strictObject({
  version: z.literal(1),
  deviceId: DeviceIdSchema,
  /** Where the id came from the first time: the config, the derivation, or an operator's identity.reidentify. */
  source: z.enum(['config', 'machine-id', 'serial', 'operator']),
  /** The machine the id belongs to; another one found at start is reported, never acted on alone. */
  signals: z.strictObject({
    machineId: SignalFingerprint.optional(),
    serial: SignalFingerprint.optional(),
    hardware: SignalFingerprint.optional(),
  }),
  recordedAt: z.int(),
});
export type DeviceRecord = z.infer<typeof DeviceRecordSchema>;

const MAX_RECORD_BYTES = 4096;

export class DeviceRecordFile {
  readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, DEVICE_RECORD_FILE);
  }

  /** The record; undefined when there is none yet. A damaged file is reported, since the id it held matters. */
  load(): { record: DeviceRecord | undefined; damaged?: string } {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      return isErrno(err, 'ENOENT') ? { record: undefined } : { record: undefined, damaged: `cannot read: ${errorReason(err)}` };
    }
    if (text.length > MAX_RECORD_BYTES) return { record: undefined, damaged: 'too large' };
    try {
      const parsed = DeviceRecordSchema.safeParse(JSON.parse(text));
      return parsed.success ? { record: parsed.data } : { record: undefined, damaged: parsed.error.issues[0]?.message ?? 'invalid' };
    } catch {
      return { record: undefined, damaged: 'not JSON' };
    }
  }

  async save(record: DeviceRecord): Promise<void> {
    await writeFileAtomic(this.path, `${JSON.stringify(DeviceRecordSchema.parse(record), null, 2)}\n`, { mode: 0o600 });
  }
}

export interface FingerprintChange {
  /** The signals whose fingerprint differs from the recorded one. */
  changed: (keyof MachineSignals)[];
  recordedFingerprint: string;
  currentFingerprint: string;
}

export interface ResolvedDevice {
  deviceId: string;
  source: DeviceRecord['source'];
  /** Set while this machine is not the one the id was recorded on, until an operator decides (identity.reidentify). */
  fingerprintChange?: FingerprintChange;
  /** The recorded id that device.id in the config replaced at this start. */
  replacedDeviceId?: string;
  /** Why the record could not be read (then the id was derived or configured afresh). */
  damagedRecord?: string;
  /** Why the record could not be written (a full disk); it is tried again at the next start. */
  unsaved?: string;
}

/**
 * The device id for this start. device.id in the config wins (an operator's explicit choice, also when it differs
 * from the recorded one); else the recorded id; else, on the very first start, the derived one. Whatever is used
 * is recorded. A machine whose signals differ from the recorded ones keeps the recorded id, so the client
 * certificate still matches and the device stays reachable: the change is returned for the caller to report.
 * Signals the record lacks (a fleetlet before the hardware signal, a DMI uuid unreadable then) are added silently.
 */
export async function resolveDevice(options: {
  file: DeviceRecordFile;
  configured: string | undefined;
  machine: MachineIdentity | undefined;
  now?: () => number;
}): Promise<ResolvedDevice> {
  const { file, configured, machine } = options;
  const { record, damaged } = file.load();
  const current = machine?.signals ?? {};
  const changed = record ? SIGNAL_NAMES.filter((name) => record.signals[name] !== undefined && current[name] !== undefined && record.signals[name] !== current[name]) : [];

  let deviceId: string;
  let source: DeviceRecord['source'];
  if (configured) [deviceId, source] = [configured, 'config'];
  else if (record) [deviceId, source] = [record.deviceId, record.source];
  else {
    const derived = resolveDeviceId(undefined, machine);
    [deviceId, source] = [derived.deviceId, derived.deviceIdSource];
  }

  // While a change waits for an operator the recorded machine stays the reference, so it is reported at every start.
  const signals = record && changed.length > 0 ? record.signals : { ...record?.signals, ...current };
  const next: DeviceRecord = {
    version: 1,
    deviceId,
    source: record?.deviceId === deviceId ? record.source : source,
    signals,
    recordedAt: record?.deviceId === deviceId ? record.recordedAt : (options.now ?? Date.now)(),
  };
  let unsaved: string | undefined;
  if (JSON.stringify(next) !== JSON.stringify(record)) {
    // A full disk must not keep the device from starting: the id is known for this run, and recorded next time.
    unsaved = await file.save(next).then(
      () => undefined,
      (err: unknown) => errorReason(err),
    );
  }
  return {
    deviceId,
    source: next.source,
    ...(record && changed.length > 0
      ? { fingerprintChange: { changed, recordedFingerprint: combinedFingerprint(record.signals), currentFingerprint: combinedFingerprint(current) } }
      : {}),
    ...(record && record.deviceId !== deviceId ? { replacedDeviceId: record.deviceId } : {}),
    ...(damaged ? { damagedRecord: damaged } : {}),
    ...(unsaved ? { unsaved } : {}),
  };
}

/** An operator's decision: this machine is the device from now on, under its id or a new one. */
export async function adoptMachine(file: DeviceRecordFile, machine: MachineIdentity | undefined, deviceId: string, now = Date.now()): Promise<void> {
  const { record } = file.load();
  await file.save({
    version: 1,
    deviceId,
    source: record?.deviceId === deviceId ? record.source : 'operator',
    signals: machine?.signals ?? {},
    recordedAt: now,
  });
}
