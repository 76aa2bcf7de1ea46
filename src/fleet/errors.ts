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

/** The hub could not be reached or answered with something else than its API: the next attempt may succeed. */
export class HubApiError extends FleetletError {
  readonly severity = 'transient';
}

/** The hub answered but refused (a wrong or revoked token, a role without the right, a certificate not trusted): retrying the same cannot help. */
export class HubRefusedError extends FleetletError {
  readonly severity = 'fatal';
}

/** The operator profile (operator.yaml) cannot be read or holds something it should not. */
export class OperatorProfileError extends FleetletError {
  readonly severity = 'fatal';
}

/** The broker was reached but refuses or silences this identity (a certificate it does not trust, an ACL): the same attempt fails again. */
export class FleetAccessError extends FleetletError {
  readonly severity = 'fatal';
}
