import { FleetletError } from '../../lib/errors.js';

/** A webhook's secretFile cannot be used (missing, empty, too large, readable by others): fix the file or the config. */
export class AlertWebhookSecretError extends FleetletError {
  readonly severity = 'fatal';
}
