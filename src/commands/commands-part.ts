import type { Config } from '../config/schema.js';
import { removeDownloadLeftovers } from '../lib/download.js';
import type { Logger } from '../lib/logger.js';
import type { Topics } from '../protocol/topics.js';
import type { Database } from '../store/db.js';
import type { Outbox } from '../store/outbox.js';
import type { AnyCommandHandler } from './handler.js';
import { CommandJournal } from './journal.js';
import type { K3sControl } from '../k3s/ports.js';
import { k3sUpgradeHandler } from './k3s-upgrade.js';
import { pingHandler } from './ping.js';
import { agentUpgradeHandler } from './agent-upgrade.js';
import { readMarker, writeGuard } from './agent-upgrade-guard.js';
import { AgentUpgradeTrial, type HealthCheck } from './agent-upgrade-trial.js';
import { snapshotDatabase } from '../store/snapshot.js';
import { k3sConfigureHandler } from './k3s-configure.js';
import type { SecretOpener } from './secret-args.js';
import { k3sRestartHandler } from './k3s-restart.js';
import { k3sStopHandler } from './k3s-stop.js';
import { logsCollectHandler } from './logs-collect.js';
import { identityReidentifyHandler, type IdentityControl } from './identity-reidentify.js';
import { CommandRouter } from './router.js';
import { trustedKeyMap } from './trust.js';
import { TrustState } from './trust-state.js';
import { trustUpdateHandler } from './trust-update.js';

export interface CommandsDeps {
  /** Where the trust document, the upgrade marker and the database snapshot live. */
  stateDir: string;
  deviceId: string;
  /** The device's groups: commands addressed to them are taken too. */
  groups: readonly string[];
  db: Database;
  outbox: Outbox;
  topics: Topics;
  logger: Logger;
  agentVersion: string;
  /** Registers for raw payloads from the command topics (the link's onCommand). */
  onCommand: (handler: (payload: Buffer) => void) => () => void;
  /** Absent when k3s is disabled or not supervised here: k3s commands are then refused as unavailable. */
  k3s?: K3sControl;
  /**
   * What a self-updated binary must show, besides a working command path, before it confirms itself: by name, e.g.
   * the link subscribed to the command topics, telemetry sampled, the database writable.
   */
  agentHealth: Record<string, HealthCheck>;
  /** A clean stop after which the service manager starts the agent again (self-update). */
  requestRestart: () => void;
  /** The agent's newest notable lines, oldest first (for logs.collect). */
  agentLogLines: (max: number) => Promise<string[]>;
  /** systemd's INVOCATION_ID, set for every start of the service. */
  invocationId: string | undefined;
  /** The device's identity, for identity.reidentify; absent: the command is refused as unavailable. */
  identity?: IdentityControl;
  /** Opens secret arguments sealed to this device (k3s.configure's joinToken). */
  secrets: SecretOpener;
}

const MAX_QUEUED = 16;

/**
 * The commands part: built from the `commands` config section, it resumes or fails what a restart interrupted
 * when it starts, then takes commands from the link. Stopping it lets the running handler save its step.
 */
export function buildCommandsPart(section: Config['commands'], deps: CommandsDeps) {
  const { stateDir } = deps;
  const trust = new TrustState({
    stateDir: stateDir,
    bootstrapRoot: section.trustRoot,
    fallbackKeys: trustedKeyMap(section.trustedKeys),
    logger: deps.logger.child({ part: 'trust' }),
  });
  const handlers: AnyCommandHandler[] = [
    pingHandler(deps.agentVersion),
    trustUpdateHandler(trust),
    agentUpgradeHandler({
      binaryPath: section.agentUpgrade.binaryPath,
      stateDir: stateDir,
      currentVersion: deps.agentVersion,
      confirmTimeoutMs: section.agentUpgrade.confirmTimeoutSeconds * 1000,
      maxArtifactBytes: section.agentUpgrade.maxArtifactBytes,
      minFreeBytes: section.agentUpgrade.minFreeBytes,
      downloadIdleTimeoutMs: section.downloadIdleTimeoutSeconds * 1000,
      snapshotState: () => snapshotDatabase(deps.db, stateDir),
      trialVerdict: () => trial.verdict(),
      requestRestart: deps.requestRestart,
      invocationId: deps.invocationId,
      checkRelease: (release) => trust.checkRelease(release),
    }),
  ];
  const k3s = deps.k3s;
  handlers.push(logsCollectHandler({ agent: deps.agentLogLines, ...(k3s ? { k3s: (max: number) => k3s.recentLogLines(max) } : {}) }));
  if (deps.identity) {
    handlers.push(identityReidentifyHandler({ identity: deps.identity, ...(k3s ? { k3s } : {}), requestRestart: deps.requestRestart }));
  }
  if (k3s) {
    const healthTimeoutMs = section.k3sUpgrade.healthTimeoutSeconds * 1000;
    handlers.push(
      k3sUpgradeHandler({
        k3s,
        healthTimeoutMs,
        minFreeBytes: section.k3sUpgrade.minFreeBytes,
        maxArtifactBytes: section.k3sUpgrade.maxArtifactBytes,
        downloadIdleTimeoutMs: section.downloadIdleTimeoutSeconds * 1000,
      }),
      k3sRestartHandler(k3s, healthTimeoutMs),
      k3sStopHandler(k3s),
      k3sConfigureHandler(k3s, healthTimeoutMs, deps.secrets),
    );
  }
  const router = new CommandRouter({
    settings: {
      enabled: section.enabled,
      deviceId: deps.deviceId,
      groups: deps.groups,
      trustedKeys: trustedKeyMap(section.trustedKeys),
      clockSkewMs: section.clockSkewSeconds * 1000,
      maxLifetimeMs: section.maxLifetimeSeconds * 1000,
      maxBytes: section.maxCommandBytes,
      maxQueued: MAX_QUEUED,
      maxRejectionsPerMinute: section.maxRejectionsPerMinute,
    },
    journal: new CommandJournal(deps.db),
    outbox: deps.outbox,
    topics: deps.topics,
    handlers,
    logger: deps.logger.child({ part: 'commands' }),
    trust,
  });
  const trial = new AgentUpgradeTrial({
    stateDir: stateDir,
    confirmTimeoutMs: section.agentUpgrade.confirmTimeoutSeconds * 1000,
    startedAt: Date.now(),
    // The command path counts only once this build verified the trial's own signed command again, with its own code
    // and the device's trust: a build that would refuse every command must not confirm itself.
    checks: (marker) => ({ ...deps.agentHealth, commands: () => router.verifiesAgain(marker.commandId) }),
    requestRestart: deps.requestRestart,
    logger: deps.logger.child({ part: 'agent-upgrade-trial' }),
  });
  let unsubscribe: (() => void) | undefined;
  return {
    router,
    part: {
      name: 'commands',
      start: async () => {
        if (section.enabled && !trust.document() && !section.trustRoot && section.trustedKeys.every((k) => k.revoked)) {
          deps.logger.warn('commands are enabled but no operator key is trusted: every command will be refused');
        }
        // Kept current at every start, so that a unit that runs it is ready before the first self-update; but
        // only by a proven binary: one on trial must not replace the net meant to catch it (it writes it on confirming).
        if ((await readMarker(stateDir))?.state !== 'trial') {
          await writeGuard(stateDir).catch((err: unknown) =>
            deps.logger.warn({ err }, 'could not write the upgrade guard; agent self-updates will be refused'),
          );
        }
        // Downloads a crash cut short are never renamed, so nothing else would remove them. Before the resume below:
        // an interrupted upgrade whose download is gone downloads it again.
        const swept = removeDownloadLeftovers(section.agentUpgrade.binaryPath);
        if (swept.length > 0) deps.logger.warn({ files: swept }, 'removed partial downloads a previous run left beside the fleetlet binary');
        trial.start();
        const resumed = router.resumeInterrupted();
        if (resumed > 0) deps.logger.warn({ resumed }, 'commands interrupted by the last stop were resumed or reported failed');
        unsubscribe = deps.onCommand((payload) => router.receive(payload));
      },
      stop: async () => {
        trial.stop();
        unsubscribe?.();
        await router.stop();
      },
    },
  };
}
