import type { Config } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import type { HubDatabase } from '../db/open.js';
import { hubBrokerOptions } from '../ingest/broker-options.js';
import { RevokedConnectionCloser } from './connection-takeover.js';
import { EnrolmentAuthority } from './enrolment-authority.js';
import { loadFleetCa } from './fleet-ca.js';

/** The CRL is rewritten this often, well inside its validity (hub.enrolment.crlDays, at least a day). */
const CRL_REFRESH_MS = 6 * 3_600_000;

export interface RunningEnrolment {
  authority: EnrolmentAuthority;
  stop(): void;
}

/**
 * Loads the fleet CA of hub.enrolment (undefined when none is configured), writes the CRL once at start, and
 * keeps rewriting it: the broker checks every device against it and refuses all of them once it has expired.
 */
export async function startEnrolment(hub: HubDatabase, fullConfig: Config, logger: Logger, now = Date.now): Promise<RunningEnrolment | undefined> {
  const config = fullConfig.hub.enrolment;
  if (!config.caCertFile || !config.caKeyFile) return undefined;
  const issuer = await loadFleetCa({ certFile: config.caCertFile, keyFile: config.caKeyFile });
  const closer = new RevokedConnectionCloser({
    brokerUrl: fullConfig.broker.url,
    base: hubBrokerOptions(fullConfig.broker),
    delaySeconds: config.disconnectAfterRevokeSeconds,
    logger,
  });
  const authority = new EnrolmentAuthority({ hub, issuer, config, closeConnection: (deviceId) => closer.schedule(deviceId) });
  const entries = await authority.writeRevocationList(now());
  logger.info({ crlPath: config.crlPath, entries }, 'enrolment open: the hub issues device certificates');
  const timer = setInterval(() => {
    authority.writeRevocationList(now()).catch((err: unknown) => logger.error({ err }, `cannot rewrite the CRL ${config.crlPath}; the broker refuses every device once it expires`));
  }, CRL_REFRESH_MS);
  timer.unref();
  return {
    authority,
    stop: () => {
      clearInterval(timer);
      closer.stop();
    },
  };
}
