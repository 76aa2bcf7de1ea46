import { dirname } from 'node:path';
import { loadSelectedConfig } from '../cli/load-selected-config.js';
import { EXIT, exitCodeFor } from '../cli/exit-codes.js';
import type { CliIo, ConfigSelection } from '../cli/program.js';
import { startAlerts, type RunningAlerts } from '../hub/alerts/alerts-service.js';
import { HubApiServer } from '../hub/api/server.js';
import { DashboardAssets } from '../hub/dashboard/assets.js';
import { dashboardBundle } from '../hub/dashboard/embedded.js';
import { startHub, type RunningHub } from '../hub/hub-service.js';
import { certificatesExpiringWithin } from '../hub/enrolment/expiring.js';
import { certificateExpirySource } from '../hub/alerts/certificate-source.js';
import { rolloutHaltedReport } from '../hub/alerts/rollout-source.js';
import type { HubRolloutSummary } from '../protocol/hub-rollouts-api.js';
import { startEnrolment, type RunningEnrolment } from '../hub/enrolment/start-enrolment.js';
import { startRollouts, type RunningRollouts } from '../hub/rollouts/run-rollouts.js';
import { FleetletError } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { sqliteNativeBinding } from '../lib/native-addon.js';
import { FLEETLET_VERSION } from '../lib/version.js';
import { Lifecycle, type Part } from './lifecycle.js';
import { runUntilSignal } from './run-until-signal.js';

/** Stopping waits for the commit in progress; a database that hangs longer than this is abandoned (nothing unacked is lost). */
const HUB_STOP_TIMEOUT_MS = 15_000;

/** `fleetlet hub`: runs one hub replica in the foreground until SIGTERM or SIGINT (systemd runs it this way). */
export async function runHubDaemon(selection: ConfigSelection, io: CliIo): Promise<number> {
  const loaded = loadSelectedConfig(selection, io);
  if (!loaded) return EXIT.CONFIG;
  const { config } = loaded;
  const logger = createLogger({ level: config.log.level });
  for (const warning of loaded.warnings) logger.warn(warning);
  logger.info({ version: FLEETLET_VERSION, files: loaded.files }, 'fleetlet hub starting');
  let hub: RunningHub | undefined;
  let api: HubApiServer | undefined;
  let enrolment: RunningEnrolment | undefined;
  const ingest: Part = {
    name: 'hub',
    start: async () => {
      const nativeBinding = config.hub.database.url ? undefined : sqliteNativeBinding(dirname(config.hub.database.file), io.env);
      hub = await startHub({ config, log: logger, nativeBinding });
    },
    stop: async () => hub?.stop(),
  };
  let alerts: RunningAlerts | undefined;
  let rollouts: RunningRollouts | undefined;
  // After the ingest, whose database holds the rollouts and the results that move them on.
  const rolloutEngine: Part = {
    name: 'hub-rollouts',
    start: () => {
      // A halted rollout opens its alert; going on, an abort or the end resolves it.
      const onStateChange = (rollout: HubRolloutSummary) =>
        void alerts?.engine.report(rolloutHaltedReport(rollout)).catch((err: unknown) => logger.warn({ err, rolloutId: rollout.rolloutId }, 'could not record the rollout alert'));
      rollouts = startRollouts({ database: hub!.database, replicaId: hub!.replicaId, config, log: logger, onStateChange });
    },
    stop: async () => rollouts?.stop(),
  };
  // After the ingest, which opens the database the API reads; stopped first, so no request meets a closed database.
  const http: Part = {
    name: 'hub-api',
    start: async () => {
      const running = hub!;
      enrolment = await startEnrolment(running.database, config, logger);
      const dashboard = new DashboardAssets(await dashboardBundle());
      api = new HubApiServer({
        hub: running.database,
        http: config.hub.http,
        logger,
        dashboard,
        ingestMetricsText: () => running.metricsText(),
        ...(enrolment ? { enrolment: enrolment.authority } : {}),
      });
      await api.start();
    },
    stop: async () => {
      enrolment?.stop();
      await api?.stop();
    },
  };
  // Reads what the ingest commits; from the database only, so any number of replicas may run it.
  const alerting: Part = {
    name: 'hub-alerts',
    start: async () => {
      if (!config.hub.alerts.enabled) return;
      const database = hub!.database;
      const certificates = certificateExpirySource(config.hub.alerts.certificateExpiring, (days, now) => certificatesExpiringWithin(database, days, now));
      alerts = startAlerts(database, config.hub.alerts, logger, [certificates]);
    },
    stop: async () => alerts?.stop(),
  };
  try {
    return await runUntilSignal(new Lifecycle([ingest, alerting, rolloutEngine, http], logger, HUB_STOP_TIMEOUT_MS), logger, process, (code) => process.exit(code));
  } catch (err) {
    logger.fatal({ err }, err instanceof FleetletError ? err.message : 'hub failed to start');
    return exitCodeFor(err);
  }
}
