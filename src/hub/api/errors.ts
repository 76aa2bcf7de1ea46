import { FleetletError } from '../../lib/errors.js';

/** An API request the hub answers with a 4xx: the client must change the request; retrying it as is cannot help. */
export class ApiRequestError extends FleetletError {
  readonly severity = 'fatal';
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 413 | 415 | 429 | 503,
    message: string,
    readonly field?: string,
    /** Seconds until a refused login may be tried again (429). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

/** The API cannot listen: the address is taken or not local, or the TLS files cannot be read. */
export class HubApiListenError extends FleetletError {
  readonly severity = 'transient';
}
