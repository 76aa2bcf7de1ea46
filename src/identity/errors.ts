import { FleetletError } from '../lib/errors.js';

/** Neither config, /etc/machine-id nor a board serial gives this device an id. */
export class DeviceIdUnavailableError extends FleetletError {
  readonly severity = 'fatal';
}

/** The node password or id file could not be read or written. */
export class NodeFilesError extends FleetletError {
  readonly severity = 'transient';
}
