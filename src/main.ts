import type { LoadedConfig } from './config/load.js';
import { configJsonSchema } from './config/json-schema.js';
import { buildProgram, runCli, type CliIo, type CommandHandlers, type ConfigSelection } from './cli/program.js';
import { EXIT } from './cli/exit-codes.js';
import { loadSelectedConfig } from './cli/load-selected-config.js';
import { runDoctor } from './cli/doctor.js';
import { runProvision } from './cli/provision.js';
import { runUninstall } from './cli/uninstall.js';
import { runStatus } from './cli/status.js';
import { runK3sCli } from './cli/k3s.js';
import { Lifecycle, type Part } from './daemon/lifecycle.js';
import { runUntilSignal } from './daemon/run-until-signal.js';
import { SystemdNotifier } from './daemon/systemd-notify.js';
import { ConfigError, FleetletError } from './lib/errors.js';
import { createLogger, type Logger } from './lib/logger.js';
import { FLEETLET_VERSION } from './lib/version.js';
import { sqliteNativeBinding } from './lib/native-addon.js';
import { openDatabase } from './store/db.js';
import { EventLog } from './store/event-log.js';
import type { Database } from './store/db.js';
import { nextBootSequence } from './link/boot-sequence.js';
import { MqttLink, type InventoryProvider } from './link/link.js';
import { Drainer } from './link/drain.js';
import { outboxLimitsFromConfig } from './store/outbox-limits.js';
import { SqliteOutbox } from './store/sqlite-outbox.js';
import { Topics } from './protocol/topics.js';
import { createTelemetry } from './telemetry/create-telemetry.js';
import { eventFromProducer } from './telemetry/producer-events.js';
import { createCommandsPart } from './commands/commands-part.js';
import { restoreStateAfterRevert } from './commands/agent-upgrade-restore.js';
import { databaseWritable } from './store/write-probe.js';
import { readMachineIdentity, resolveDeviceId } from './identity/device-id.js';
import { DeviceIdUnavailableError } from './identity/errors.js';
import { createK3sPart } from './k3s/k3s-part.js';

/** The composition root: the only place that builds parts and wires them together. */

const STOP_TIMEOUT_MS = 10_000;

export async function main(argv: string[], io: CliIo): Promise<number> {
  let exitCode: number = EXIT.OK;
  const handlers: CommandHandlers = {
    agent: (selection) => runAgent(selection, io),
    configCheck: async (selection) => {
      const loaded = loadSelectedConfig(selection, io);
      if (!loaded) return EXIT.CONFIG;
      for (const warning of loaded.warnings) io.stderr(`warning: ${warning}\n`);
      io.stdout(`configuration ok (${loaded.files.length > 0 ? loaded.files.join(', ') : 'no files; defaults and environment'})\n`);
      return EXIT.OK;
    },
    configSchema: async () => {
      io.stdout(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
      return EXIT.OK;
    },
    doctor: (selection, options) => runDoctor({ selection, ...options }, io),
    provision: (options) => runProvision({ ...options, trustAnchors: options.trustAnchor }, io),
    uninstall: (selection, options) => runUninstall({ selection, ...options }, io),
    status: (selection, options) =>
      runStatus({ selection, ...options, nativeBinding: (stateDir) => sqliteNativeBinding(stateDir, io.env) }, io),
    k3s: (selection, action) => runK3sCli({ selection, action, interactive: process.stderr.isTTY === true }, io),
  };
  const program = buildProgram(handlers, io, (code) => (exitCode = code));
  try {
    return await runCli(program, argv, () => exitCode);
  } catch (err) {
    io.stderr(`fleetlet: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof ConfigError ? EXIT.CONFIG : EXIT.FAILURE;
  }
}

async function runAgent(selection: ConfigSelection, io: CliIo): Promise<number> {
  const loaded = loadSelectedConfig(selection, io);
  if (!loaded) return EXIT.CONFIG;
  const { config } = loaded;
  const logger = createLogger({ level: config.log.level });
  for (const warning of loaded.warnings) logger.warn(warning);
  logger.info({ version: FLEETLET_VERSION, files: loaded.files, stateDir: config.stateDir }, 'fleetlet agent starting');

  let parts: Part[];
  try {
    await restoreAfterRevert(config.stateDir, io.env, logger);
    parts = buildAgentParts(loaded, logger, io.env);
  } catch (err) {
    logger.fatal({ err }, err instanceof FleetletError ? err.message : 'failed to start');
    return err instanceof ConfigError ? EXIT.CONFIG : EXIT.FAILURE;
  }
  const lifecycle = new Lifecycle(parts, logger, STOP_TIMEOUT_MS);
  return runUntilSignal(lifecycle, logger, process, (code) => process.exit(code));
}

/** Before the database is opened: after a reverted self-update it may have been migrated past this binary. */
async function restoreAfterRevert(stateDir: string, env: Record<string, string | undefined>, logger: Logger): Promise<void> {
  try {
    const restored = await restoreStateAfterRevert(stateDir, sqliteNativeBinding(stateDir, env));
    if (restored) logger.warn(restored, 'self-update reverted: state database restored from the snapshot taken before it');
  } catch (err) {
    logger.error({ err }, 'could not restore the state database snapshot of a reverted self-update');
  }
}

function buildAgentParts({ config }: LoadedConfig, logger: Logger, env: Record<string, string | undefined>): Part[] {
  const opened = openDatabase({
    stateDir: config.stateDir,
    fleetletVersion: FLEETLET_VERSION,
    nativeBinding: sqliteNativeBinding(config.stateDir, env),
  });
  const eventLog = new EventLog(opened.db);
  if (opened.recovered) {
    logger.error(opened.recovered, 'state database was unreadable; moved it aside and started a fresh one');
    eventLog.record('state.database_recovered', opened.recovered);
  }
  const state: Part = { name: 'state-database', start: () => {}, stop: () => void opened.db.close() };
  const outbox = new SqliteOutbox(opened.db, { limits: outboxLimitsFromConfig(config.limits), logger, conditions: eventLog });
  const drainer = new Drainer(outbox, { window: config.broker.inflightWindow, logger });
  // device.id from the config, else derived from /etc/machine-id or the board serial.
  const machine = readMachineIdentity();
  const { deviceId } = deviceIdOrConfigError(config.device.id, machine);
  const topics = new Topics(config.broker.topicRoot);
  // Providers are read at each sample, after every part is built; a part that does not exist yet reports "unknown".
  const { telemetry, events } = createTelemetry({
    config,
    deviceId,
    topics,
    outbox,
    db: opened.db,
    providers: {
      linkState: () => {
        const { connected, since } = link.state();
        return { connected, since: new Date(since) };
      },
      k3sState: () => (k3s ? k3s.view() : { state: 'disabled', healthy: true }),
      identityFingerprints: () => k3s?.fingerprints() ?? {},
      outboxStats: () => {
        const stats = outbox.stats();
        return { depth: stats.rows, dropped: stats.dropped };
      },
    },
    logger,
    fleetletVersion: FLEETLET_VERSION,
  });
  if (opened.recovered) {
    events.emit(eventFromProducer({ kind: 'state.database-recovered', at: Date.now(), detail: { movedTo: opened.recovered.movedTo } }));
  }
  telemetry.onInventoryChange(() => {
    link.publishInventory().catch((err: unknown) => logger.warn({ err }, 'could not publish the changed inventory'));
  });
  const k3s = config.k3s.enabled
    ? createK3sPart({
        k3s: config.k3s,
        stateDir: config.stateDir,
        db: opened.db,
        machine,
        deviceIdConfigured: config.device.id !== undefined,
        env,
        argv: process.argv,
        // Kept in the local event log, and sent to the fleet through the deduplicating, rate-limited gate.
        sink: {
          emit: (event) => {
            eventLog.record(event.kind, { ...event.detail, ...(event.remedy ? { remedy: event.remedy } : {}) }, event.at);
            events.emit(eventFromProducer(event));
          },
        },
        logger,
      })
    : undefined;
  const link = buildLink(config, deviceId, opened.db, drainer, logger, () => telemetry.inventory());
  const commands = createCommandsPart({
    config,
    deviceId,
    ...(k3s?.control ? { k3s: k3s.control } : {}),
    db: opened.db,
    outbox,
    topics,
    logger,
    agentVersion: FLEETLET_VERSION,
    onCommand: (handler) => link.onCommand((_topic, payload) => handler(payload)),
    // A self-updated binary confirms itself only once each of these (and its command path) works.
    agentHealth: {
      link: () => link.state().subscribed,
      telemetry: () => telemetry.latest() !== undefined,
      database: () => databaseWritable(opened.db),
    },
    // A clean stop; systemd (Restart=always) starts the service again, from the new binary.
    requestRestart: () => process.kill(process.pid, 'SIGTERM'),
    agentLogLines: async (max) =>
      eventLog
        .recent(max)
        .reverse()
        .map((e) => `${new Date(e.at).toISOString()} ${e.kind} ${JSON.stringify(e.detail)}`),
    invocationId: env.INVOCATION_ID,
  });
  const systemd = new SystemdNotifier(env, logger);
  // Commands start before the link delivers any and stop after it: nothing arrives at a stopped router.
  // k3s stops first (one SIGTERM) and starts after everything that reports on it.
  return [state, commands.part, link, telemetry, ...(k3s ? [k3s.part] : []), systemd.asPart()];
}

/** A device with neither device.id nor a machine id or serial is misconfigured: exit as for a bad config. */
function deviceIdOrConfigError(configured: string | undefined, machine: ReturnType<typeof readMachineIdentity>) {
  try {
    return resolveDeviceId(configured, machine);
  } catch (err) {
    if (!(err instanceof DeviceIdUnavailableError)) throw err;
    throw new ConfigError([{ path: 'device.id', source: 'not set', message: err.message }]);
  }
}

function buildLink(
  config: LoadedConfig['config'],
  deviceId: string,
  db: Database,
  drain: Drainer,
  logger: Logger,
  inventory: InventoryProvider,
): MqttLink {
  return new MqttLink({
    broker: config.broker,
    deviceId,
    groups: config.device.groups,
    maxMessageBytes: config.limits.maxMessageBytes,
    bootSequence: nextBootSequence(db),
    fleetletVersion: FLEETLET_VERSION,
    logger,
    drain,
    inventory,
  });
}
