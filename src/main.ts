import type { Config } from './config/schema.js';
import type { ConfigSelection, CliIo } from './cli/program.js';
import { runCommandLine } from './cli/command-table.js';
import { EXIT, exitCodeFor } from './cli/exit-codes.js';
import { loadSelectedConfig } from './cli/load-selected-config.js';
import { Lifecycle, type Part } from './daemon/lifecycle.js';
import { runUntilSignal } from './daemon/run-until-signal.js';
import { outboxWithWriteProgress } from './daemon/progress-monitor.js';
import { diskFullEvent } from './daemon/agent-state.js';
import { buildStatePart } from './daemon/state-part.js';
import { buildWatchdogPart } from './daemon/watchdog-part.js';
import { FleetletError } from './lib/errors.js';
import { createProcessLogger, type Logger } from './lib/logger.js';
import { RecentLines } from './lib/recent-lines.js';
import { FLEETLET_VERSION } from './lib/version.js';
import { sqliteNativeBinding } from './lib/native-addon.js';
import { buildLinkPart } from './link/link-part.js';
import { lockStateDir } from './store/state-lock.js';
import { Topics } from './protocol/topics.js';
import { buildTelemetryPart } from './telemetry/create-telemetry.js';
import { eventFromProducer } from './telemetry/producer-events.js';
import { buildCommandsPart } from './commands/commands-part.js';
import { restoreStateAfterRevert } from './commands/agent-upgrade-restore.js';
import { databaseWritable } from './store/write-probe.js';
import { buildDeviceIdentity } from './identity/device-part.js';
import { IdentityStore } from './identity/identity-store.js';
import { NodeFiles } from './identity/node-files.js';
import { createIdentityControl, fingerprintChangedEvent } from './identity/reidentify.js';
import type { IdentityControl } from './commands/identity-reidentify.js';
import { certificateCommonName } from './link/client-options.js';
import { buildK3sPart } from './k3s/k3s-part.js';
import { buildEnrolmentPart } from './identity/enrolment-part.js';
import { certificateNotAfterOfFile } from './identity/certificate-check.js';
import { withEnrolledTls } from './config/enrolment-schema.js';

/**
 * The composition root: the only place that builds parts and wires them together. Each part is built by one function
 * in its own room, from its own config section and a narrow deps object; this file calls them in order.
 */

const STOP_TIMEOUT_MS = 10_000;
const RECENT_LOG_LINES = 1_000;
const RECENT_LOG_BYTES = 512 * 1024;

export function main(argv: string[], io: CliIo): Promise<number> {
  return runCommandLine(argv, io, (selection) => runAgent(selection, io));
}

async function runAgent(selection: ConfigSelection, io: CliIo): Promise<number> {
  const loaded = loadSelectedConfig(selection, io);
  if (!loaded) return EXIT.CONFIG;
  const { config } = loaded;
  // The agent's own recent log, for logs.collect: bounded, and redacted as the log itself is.
  const recentLog = new RecentLines(RECENT_LOG_LINES, RECENT_LOG_BYTES);
  const logger = await createProcessLogger(config.log.level, recentLog);
  for (const warning of loaded.warnings) logger.warn(warning);
  logger.info({ version: FLEETLET_VERSION, files: loaded.files, stateDir: config.stateDir }, 'fleetlet agent starting');

  let parts: Part[];
  try {
    // Before anything reads or writes the state: a second agent on it must leave it alone.
    const lock = lockStateDir(config.stateDir, { nativeBinding: sqliteNativeBinding(config.stateDir, io.env) });
    if (lock.unavailable) logger.warn({ reason: lock.unavailable }, 'could not lock the state directory; starting without the lock');
    await restoreAfterRevert(config.stateDir, io.env, logger);
    parts = [
      { name: 'state-lock', start: () => {}, stop: () => lock.release() },
      ...(await buildAgentParts(config, {
        env: io.env,
        argv: process.argv,
        logger,
        recentLog,
        // A clean stop; systemd (Restart=always) starts the service again, from the new binary.
        requestRestart: () => process.kill(process.pid, 'SIGTERM'),
      })),
    ];
  } catch (err) {
    logger.fatal({ err }, err instanceof FleetletError ? err.message : 'failed to start');
    return exitCodeFor(err);
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

/** What the agent takes from the process it runs in. */
export interface AgentHost {
  env: Record<string, string | undefined>;
  argv: readonly string[];
  logger: Logger;
  /** A clean stop after which the service manager starts the agent again (self-update). */
  requestRestart: () => void;
  /** The agent's own recent log lines, for logs.collect; without it, logs.collect returns the local event log. */
  recentLog?: RecentLines;
}

/** Builds every part of the agent, in the order the lifecycle starts them (and stops them in reverse). */
export async function buildAgentParts(config: Config, host: AgentHost): Promise<Part[]> {
  const { env, logger } = host;
  const store = buildStatePart(config, { fleetletVersion: FLEETLET_VERSION, nativeBinding: sqliteNativeBinding(config.stateDir, env), logger });
  const { db, eventLog, diskFull } = store;
  // The watchdog is pinged only while each of these shows progress (see daemon/watched-parts.ts).
  const watchdog = buildWatchdogPart(config, { env, logger });
  const { watched } = watchdog;
  const reports = outboxWithWriteProgress(store.outbox, watched.database);
  const device = await buildDeviceIdentity(config.device, { stateDir: config.stateDir, logger });
  const { machine } = device;
  const { deviceId } = device.resolved;
  const topics = new Topics(config.broker.topicRoot);
  // Providers are read at each sample, after every part is built; a part that does not exist yet reports "unknown".
  const { telemetry, events } = buildTelemetryPart(config.telemetry, {
    device: { deviceId, name: config.device.name, labels: config.device.labels, groups: config.device.groups, nodeName: config.k3s.nodeName },
    stateDir: config.stateDir,
    ...(config.k3s.enabled ? { k3sDataDir: config.k3s.dataDir } : {}),
    topics,
    outbox: reports,
    db,
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
        const stats = store.outbox.stats();
        return { depth: stats.rows, dropped: stats.dropped };
      },
    },
    logger,
    fleetletVersion: FLEETLET_VERSION,
    ...(device.sealKey.publicKey ? { sealKey: device.sealKey.publicKey } : {}),
  });
  if (store.recovered) {
    events.emit(eventFromProducer({ kind: 'state.database-recovered', at: Date.now(), detail: { ...store.recovered } }));
  }
  if (device.resolved.fingerprintChange) {
    const event = fingerprintChangedEvent(deviceId, device.resolved.fingerprintChange);
    eventLog.record(event.kind, { ...event.detail });
    events.emit(event);
  }
  if (diskFull) events.emit(diskFullEvent(config.stateDir, diskFull));
  telemetry.onInventoryChange(() => {
    link.publishInventory().catch((err: unknown) => logger.warn({ err }, 'could not publish the changed inventory'));
  });
  const k3s = config.k3s.enabled
    ? buildK3sPart(config.k3s, {
        stateDir: config.stateDir,
        db,
        machine,
        env,
        argv: host.argv,
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
  // With enrolment the device makes its own key and gets its certificate from the hub; the link waits for it.
  const enrolment = buildEnrolmentPart(config, {
    deviceId,
    fingerprint: machine?.fingerprint,
    sink: {
      emit: (event) => {
        eventLog.record(event.kind, { ...event.detail, ...(event.reason ? { reason: event.reason } : {}) }, event.at);
        events.emit(eventFromProducer(event));
      },
    },
    logger,
  });
  const clientCertFile = withEnrolledTls(config.broker, config.stateDir, config.enrolment).tls.certFile;
  const link = buildLinkPart(config.broker, {
    deviceId,
    groups: config.device.groups,
    maxMessageBytes: config.limits.maxMessageBytes,
    bootSequence: store.bootSequence,
    topics,
    outbox: store.outbox,
    inventory: () => {
      const inventory = telemetry.inventory();
      const notAfter = enrolment ? enrolment.notAfter() : clientCertFile && certificateNotAfterOfFile(clientCertFile);
      return inventory && notAfter ? { ...inventory, clientCertificateNotAfter: notAfter.toISOString() } : inventory;
    },
    progress: watched.link,
    ...(enrolment ? { credentials: enrolment } : {}),
    fleetletVersion: FLEETLET_VERSION,
    logger,
  });
  // On the in-memory copy no command can be journaled for good, so replay protection would not outlive a restart.
  const commands = buildCommandsPart(diskFull ? { ...config.commands, enabled: false } : config.commands, {
    stateDir: config.stateDir,
    deviceId,
    groups: config.device.groups,
    ...(k3s?.control ? { k3s: k3s.control } : {}),
    db,
    outbox: reports,
    topics,
    logger,
    agentVersion: FLEETLET_VERSION,
    secrets: device.sealKey,
    onCommand: (handler) => link.onCommand((_topic, payload) => handler(payload)),
    // A self-updated binary confirms itself only once each of these (and its command path) works.
    agentHealth: {
      link: () => link.state().subscribed,
      telemetry: () => telemetry.latest() !== undefined,
      database: () => databaseWritable(db),
    },
    requestRestart: host.requestRestart,
    // The agent's own recent log; the local event log when nothing was logged (log.level silent).
    agentLogLines: async (max) => {
      const own = host.recentLog?.newest(max) ?? [];
      if (own.length > 0) return own;
      return eventLog
        .recent(max)
        .reverse()
        .map((e) => `${new Date(e.at).toISOString()} ${e.kind} ${JSON.stringify(e.detail)}`);
    },
    invocationId: env.INVOCATION_ID,
    identity: createIdentityControl({
      deviceId,
      configuredDeviceId: config.device.id,
      record: device.record,
      machine,
      ...(clientCertFile ? { clientCertificateName: () => certificateCommonName(clientCertFile) } : {}),
      ...(config.k3s.enabled ? { node: { store: new IdentityStore(db), files: new NodeFiles(config.k3s.nodeConfigDir) } } : {}),
      events,
    }) satisfies IdentityControl,
  });
  commands.router.reportProgress(watched.commands);
  // Commands start before the link delivers any and stop after it: nothing arrives at a stopped router.
  // k3s starts before commands, so that a resumed command finds it supervised, and stops after them: a command is
  // aborted while k3s is still supervised, so no health wait judges fleetlet's own shutdown. Its stop leaves k3s
  // running for the next fleetlet.
  // Enrolment starts before the link, which waits for its certificate.
  return [store.part, ...(k3s ? [k3s.part] : []), commands.part, ...(enrolment ? [enrolment] : []), link, telemetry, watchdog.part];
}
