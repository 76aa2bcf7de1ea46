import { FleetletError } from '../../lib/errors.js';

/** `hub user add` for a name that exists, `hub token create` for one that does not, a bad role: fix the command. */
export class OperatorAccountError extends FleetletError {
  readonly severity = 'fatal';
}
