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
import { runHubStatus } from './cli/hub.js';
import { runHubDaemon } from './daemon/hub-daemon.js';
import { Lifecycle, type Part } from './daemon/lifecycle.js';
import { runUntilSignal } from './daemon/run-until-signal.js';
import { SystemdNotifier } from './daemon/systemd-notify.js';
import { outboxWithWriteProgress, ProgressMonitor } from './daemon/progress-monitor.js';
import { registerWatchedParts } from './daemon/watched-parts.js';
import { diskFullEvent, openAgentState } from './daemon/agent-state.js';
import { ConfigError, FleetletError } from './lib/errors.js';
import { createLogger, type Logger } from './lib/logger.js';
import type { Heartbeat } from './lib/heartbeat.js';
import { FLEETLET_VERSION } from './lib/version.js';
import { sqliteNativeBinding } from './lib/native-addon.js';
import { EventLog } from './store/event-log.js';
import { MqttLink, type InventoryProvider } from './link/link.js';
import { Drainer } from './link/drain.js';
import { outboxLimitsFromConfig } from './store/outbox-limits.js';
import { SqliteOutbox } from './store/sqlite-outbox.js';
import { Topics } from './protocol/topics.js';
import { createTelemetry } from './telemetry/create-telemetry.js';
import { eventFromProducer } from './telemetry/producer-events.js';
import { createCommandsPart } from './commands/commands-part.js';
import { machineSourcesUnder, readMachineIdentity, type MachineIdentity } from './identity/device-id.js';
import { DeviceRecordFile, resolveDevice, type ResolvedDevice } from './identity/device-record.js';
import { restoreStateAfterRevert } from './commands/agent-upgrade-restore.js';
import { databaseWritable } from './store/write-probe.js';
import { DeviceIdUnavailableError } from './identity/errors.js';
import { IdentityStore } from './identity/identity-store.js';
import { deviceSealKey } from './identity/seal-key.js';
import { NodeFiles } from './identity/node-files.js';
import { createIdentityControl, fingerprintChangedEvent } from './identity/reidentify.js';
import type { IdentityControl } from './commands/identity-reidentify.js';
import { certificateCommonName } from './link/client-options.js';
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
    hub: (selection, action) =>
      action.kind === 'run' ? runHubDaemon(selection, io) : runHubStatus(selection, { json: action.json, nativeBinding: (dir) => sqliteNativeBinding(dir, io.env) }, io),
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
    parts = await buildAgentParts(loaded, logger, io.env);
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

async function buildAgentParts({ config }: LoadedConfig, logger: Logger, env: Record<string, string | undefined>): Promise<Part[]> {
  const { opened, bootSequence, diskFull } = openAgentState({
    stateDir: config.stateDir,
    fleetletVersion: FLEETLET_VERSION,
    nativeBinding: sqliteNativeBinding(config.stateDir, env),
  });
  if (diskFull) {
    logger.error(diskFull, 'the file system of the state directory is full: running on an in-memory copy of the state until a restart with room; commands are refused meanwhile');
  }
  const eventLog = new EventLog(opened.db, config.limits.eventLog);
  if (opened.recovered) {
    logger.error(opened.recovered, 'state database was unreadable; moved it aside and started a fresh one');
    eventLog.record('state.database-recovered', { ...opened.recovered });
  }
  const state: Part = { name: 'state-database', start: () => {}, stop: () => void opened.db.close() };
  const outbox = new SqliteOutbox(opened.db, { limits: outboxLimitsFromConfig(config.limits), logger, conditions: eventLog });
  const drainer = new Drainer(outbox, { window: config.broker.inflightWindow, logger });
  // The watchdog is pinged only while each of these shows progress (see daemon/watched-parts.ts).
  const progress = new ProgressMonitor();
  const watched = registerWatchedParts(progress, config);
  const reports = outboxWithWriteProgress(outbox, watched.database);
  // device.id from the config, else the id recorded at the first start (derived from /etc/machine-id or the serial).
  const machine = readMachineIdentity(machineSourcesUnder(config.device.identityRoot));
  const deviceRecord = new DeviceRecordFile(config.stateDir);
  const device = await deviceOrConfigError(deviceRecord, config.device.id, machine, logger);
  const { deviceId } = device;
  const sealKey = await deviceSealKey(config.stateDir, logger);
  const topics = new Topics(config.broker.topicRoot);
  // Providers are read at each sample, after every part is built; a part that does not exist yet reports "unknown".
  const { telemetry, events } = createTelemetry({
    config,
    deviceId,
    topics,
    outbox: reports,
    db: opened.db,
    progress: watched.sampler,
    providers: {
      linkState: () => {
        const { connected, since } = link.state();
        return { connected, since: new Date(since) };
      },
      k3sState: () => (k3s ? k3s.view() : { state: 'disabled', healthy: true }),
      // The machine's fingerprint is what identity.reidentify quotes: the inventory shows it also without k3s.
      identityFingerprints: () => ({ ...(machine ? { machine: machine.fingerprint } : {}), ...k3s?.fingerprints() }),
      outboxStats: () => {
        const stats = outbox.stats();
        return { depth: stats.rows, dropped: stats.dropped };
      },
    },
    logger,
    fleetletVersion: FLEETLET_VERSION,
    ...(sealKey.publicKey ? { sealKey: sealKey.publicKey } : {}),
  });
  if (opened.recovered) {
    events.emit(eventFromProducer({ kind: 'state.database-recovered', at: Date.now(), detail: { ...opened.recovered } }));
  }
  if (device.fingerprintChange) {
    const event = fingerprintChangedEvent(deviceId, device.fingerprintChange);
    eventLog.record(event.kind, { ...event.detail });
    events.emit(event);
  }
  if (diskFull) events.emit(diskFullEvent(config.stateDir, diskFull));
  telemetry.onInventoryChange(() => {
    link.publishInventory().catch((err: unknown) => logger.warn({ err }, 'could not publish the changed inventory'));
  });
  const k3s = config.k3s.enabled
    ? createK3sPart({
        k3s: config.k3s,
        stateDir: config.stateDir,
        db: opened.db,
        machine,
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
  const link = buildLink(config, deviceId, bootSequence, drainer, logger, () => telemetry.inventory(), watched.link);
  const commands = createCommandsPart({
    // On the in-memory copy no command can be journaled for good, so replay protection would not outlive a restart.
    config: diskFull ? { ...config, commands: { ...config.commands, enabled: false } } : config,
    deviceId,
    ...(k3s?.control ? { k3s: k3s.control } : {}),
    db: opened.db,
    outbox: reports,
    topics,
    logger,
    agentVersion: FLEETLET_VERSION,
    secrets: sealKey,
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
    identity: createIdentityControl({
      deviceId,
      configuredDeviceId: config.device.id,
      record: deviceRecord,
      machine,
      ...(config.broker.tls.certFile ? { clientCertificateName: () => certificateCommonName(config.broker.tls.certFile!) } : {}),
      ...(config.k3s.enabled ? { node: { store: new IdentityStore(opened.db), files: new NodeFiles(config.k3s.nodeConfigDir) } } : {}),
      events,
    }) satisfies IdentityControl,
  });
  commands.router.reportProgress(watched.commands);
  const systemd = new SystemdNotifier(env, logger);
  // Commands start before the link delivers any and stop after it: nothing arrives at a stopped router.
  // k3s starts before commands, so that a resumed command finds it supervised, and stops after them: a command is
  // aborted while k3s is still supervised, so no health wait judges fleetlet's own shutdown. Its stop leaves k3s
  // running for the next fleetlet.
  return [state, ...(k3s ? [k3s.part] : []), commands.part, link, telemetry, systemd.asPart(progress)];
}

/** A device with neither device.id, a recorded id, a machine id nor a serial is misconfigured: exit as for a bad config. */
async function deviceOrConfigError(
  record: DeviceRecordFile,
  configured: string | undefined,
  machine: MachineIdentity | undefined,
  logger: Logger,
): Promise<ResolvedDevice> {
  let device: ResolvedDevice;
  try {
    device = await resolveDevice({ file: record, configured, machine });
  } catch (err) {
    if (!(err instanceof DeviceIdUnavailableError)) throw err;
    throw new ConfigError([{ path: 'device.id', source: 'not set', message: err.message }]);
  }
  if (device.damagedRecord) logger.error({ file: record.path, reason: device.damagedRecord }, 'the recorded device id was unreadable; recorded it afresh');
  if (device.unsaved) logger.error({ file: record.path, reason: device.unsaved }, 'could not record the device id; trying again at the next start');
  if (device.replacedDeviceId) {
    logger.warn({ recorded: device.replacedDeviceId, configured: device.deviceId }, 'device.id in the config differs from the recorded id: using the configured one');
  }
  if (device.fingerprintChange) {
    logger.warn({ deviceId: device.deviceId, ...device.fingerprintChange }, 'this device runs on another machine than its id was recorded on; kept the id until an operator decides');
  }
  return device;
}

function buildLink(
  config: LoadedConfig['config'],
  deviceId: string,
  bootSequence: number,
  drain: Drainer,
  logger: Logger,
  inventory: InventoryProvider,
  progress: Heartbeat,
): MqttLink {
  return new MqttLink({
    broker: config.broker,
    deviceId,
    groups: config.device.groups,
    maxMessageBytes: config.limits.maxMessageBytes,
    bootSequence,
    fleetletVersion: FLEETLET_VERSION,
    logger,
    drain,
    inventory,
    progress,
  });
}
