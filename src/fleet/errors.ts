import { FleetletError } from '../lib/errors.js';

/** The operator's signing key is missing, unreadable, readable by others, or not Ed25519. */
export class SigningKeyError extends FleetletError {
  readonly severity = 'fatal';
}

/** The broker could not be reached or refused the operator's connection. */
export class FleetConnectionError extends FleetletError {
  readonly severity = 'transient';
}

/** A rollout state file that cannot be read or belongs to another rollout. */
export class RolloutStateError extends FleetletError {
  readonly severity = 'fatal';
}

/** The target device's seal key cannot be had from its retained inventory, so a secret cannot be sealed to it. */
export class SealKeyUnavailableError extends FleetletError {
  readonly severity = 'transient';
}

/** The operator profile (operator.yaml) cannot be read or holds something it should not. */
export class OperatorProfileError extends FleetletError {
  readonly severity = 'fatal';
}
