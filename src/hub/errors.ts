import { FleetletError } from '../lib/errors.js';

/** The hub's database cannot be opened or migrated now (PostgreSQL down, a lock held): a later start may succeed. */
export class HubDatabaseUnavailableError extends FleetletError {
  readonly severity = 'transient';
}

/** The database holds migrations this hub does not know: a newer hub wrote it. Retrying cannot help. */
export class HubDatabaseTooNewError extends FleetletError {
  readonly severity = 'fatal';
}

/** The broker refused the hub's connection or subscription (auth, ACL, no MQTT 5): fix the broker or the config. */
export class HubBrokerError extends FleetletError {
  readonly severity = 'transient';
}
