import { FleetletError } from '../lib/errors.js';

/** Neither config, /etc/machine-id nor a board serial gives this device an id. */
export class DeviceIdUnavailableError extends FleetletError {
  readonly severity = 'fatal';
}

/** The node password or id file could not be read or written. */
export class NodeFilesError extends FleetletError {
  readonly severity = 'transient';
}

/** The enrolled key, certificate or renewal credential could not be read or written. */
export class EnrolmentFilesError extends FleetletError {
  readonly severity = 'transient';
}

/** The hub could not be reached or answered outside the enrolment contract; the next attempt may succeed. */
export class EnrolmentHubError extends FleetletError {
  readonly severity = 'transient';
}

/** A certificate the hub issued fails the device's checks (another CA, key or name, or already expired). */
export class CertificateRejectedError extends FleetletError {
  readonly severity = 'transient';
}
