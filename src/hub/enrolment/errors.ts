import { FleetletError } from '../../lib/errors.js';

/** The fleet CA's files are missing, unreadable, not P-256 or do not belong together: fix them, then start again. */
export class FleetCaError extends FleetletError {
  readonly severity = 'fatal';
}

/** An operator's enrolment command names something that does not exist or cannot be done (approve a denied request). */
export class EnrolmentAdminError extends FleetletError {
  readonly severity = 'fatal';
}
