import type { Config } from '../config/schema.js';
import { ConfigError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { machineSourcesUnder, readMachineIdentity, type MachineIdentity } from './device-id.js';
import { DeviceRecordFile, resolveDevice, type ResolvedDevice } from './device-record.js';
import { DeviceIdUnavailableError } from './errors.js';
import { deviceSealKey, type DeviceSealKey } from './seal-key.js';

export interface DeviceIdentityDeps {
  /** Where the recorded device id and the seal key live. */
  stateDir: string;
  logger: Logger;
}

export interface AgentDevice {
  /** The machine's identity signals, when any could be read. */
  machine: MachineIdentity | undefined;
  record: DeviceRecordFile;
  resolved: ResolvedDevice;
  /** The key secret command arguments are sealed to. */
  sealKey: DeviceSealKey;
}

/**
 * The device's identity, from the `device` config section: device.id from the config, else the id recorded at the
 * first start (derived from /etc/machine-id or the serial), and the device's seal key.
 */
export async function buildDeviceIdentity(device: Config['device'], deps: DeviceIdentityDeps): Promise<AgentDevice> {
  const machine = readMachineIdentity(machineSourcesUnder(device.identityRoot));
  const record = new DeviceRecordFile(deps.stateDir);
  const resolved = await deviceOrConfigError(record, device.id, machine, deps.logger);
  const sealKey = await deviceSealKey(deps.stateDir, deps.logger);
  return { machine, record, resolved, sealKey };
}

/** A device with neither device.id, a recorded id, a machine id nor a serial is misconfigured: exit as for a bad config. */
async function deviceOrConfigError(
  record: DeviceRecordFile,
  configured: string | undefined,
  machine: MachineIdentity | undefined,
  logger: Logger,
): Promise<ResolvedDevice> {
  let device: ResolvedDevice;
  try {
    device = await resolveDevice({ file: record, configured, machine });
  } catch (err) {
    if (!(err instanceof DeviceIdUnavailableError)) throw err;
    throw new ConfigError([{ path: 'device.id', source: 'not set', message: err.message }]);
  }
  if (device.damagedRecord) logger.error({ file: record.path, reason: device.damagedRecord }, 'the recorded device id was unreadable; recorded it afresh');
  if (device.unsaved) logger.error({ file: record.path, reason: device.unsaved }, 'could not record the device id; trying again at the next start');
  if (device.replacedDeviceId) {
    logger.warn({ recorded: device.replacedDeviceId, configured: device.deviceId }, 'device.id in the config differs from the recorded id: using the configured one');
  }
  if (device.fingerprintChange) {
    logger.warn({ deviceId: device.deviceId, ...device.fingerprintChange }, 'this device runs on another machine than its id was recorded on; kept the id until an operator decides');
  }
  return device;
}
