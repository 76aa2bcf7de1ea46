import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Database } from '../store/db.js';
import { removeDownloadLeftovers } from '../lib/download.js';
import type { Logger } from '../lib/logger.js';
import type { MachineIdentity } from '../identity/device-id.js';
import { IdentityStore } from '../identity/identity-store.js';
import { NodeFiles } from '../identity/node-files.js';
import { ensureNodeIdentity, type NodeIdentityReport } from '../identity/node-identity.js';
import { buildAgentInvocation, commandLineLooksLikeK3s, type K3sConfig } from './args.js';
import { binaryVersion, SupervisedK3sControl } from './control.js';
import type { K3sEventSink, K3sView } from './ports.js';
import { kubeletHealthzUrl } from './health.js';
import { K3sInstaller } from './installer.js';
import { NodeSettingsFile, withNodeSettings } from './node-settings.js';
import { k3sArch } from './release.js';
import { K3sSupervisor } from './supervisor.js';

/** fleetlet's own files about the k3s it runs; the name avoids "k3s" on purpose (see DESIGN.md). */
export const WORK_DIR_NAME = 'node-agent';

export interface K3sPartDeps {
  /** fleetlet's own files about k3s live in a directory under it. */
  stateDir: string;
  db: Database;
  machine: MachineIdentity | undefined;
  env: Record<string, string | undefined>;
  argv: readonly string[];
  sink: K3sEventSink;
  logger: Logger;
}

/**
 * The k3s part, built from the `k3s` config section: the supervisor, its control handle and the identity check that
 * runs before every start of k3s.
 */
export function buildK3sPart(k3s: K3sConfig, deps: K3sPartDeps) {
  const { logger } = deps;
  const workDir = join(deps.stateDir, WORK_DIR_NAME);
  const settings = new NodeSettingsFile(join(workDir, 'node-settings.json'));
  const identityStore = new IdentityStore(deps.db);
  const files = new NodeFiles(k3s.nodeConfigDir);
  let identity: NodeIdentityReport | undefined;
  let version: string | undefined;

  if (commandLineLooksLikeK3s(deps.argv)) {
    // Only the fact and the program: the rest of the command line may carry --set values.
    logger.warn({ program: deps.argv[0] }, 'fleetlet\'s command line contains "k3s": the system-upgrade-controller would take fleetlet for k3s');
  }

  const checkIdentity = () => {
    identity = ensureNodeIdentity({ store: identityStore, files, machineFingerprint: deps.machine?.fingerprint, withNodeId: k3s.withNodeId });
    if (identity.actions.some((action) => action !== 'unchanged')) {
      deps.sink.emit({
        kind: 'k3s.identity',
        at: Date.now(),
        detail: { actions: identity.actions, passwordFingerprint: identity.passwordFingerprint },
      });
    }
  };

  const supervisor = new K3sSupervisor({
    binaryPath: k3s.binaryPath,
    dataDir: k3s.dataDir,
    binaryVersion,
    invocation: () => buildAgentInvocation(withNodeSettings(k3s, settings.load())),
    baseEnv: deps.env,
    passEnv: k3s.passEnv,
    workDir,
    healthzUrl: kubeletHealthzUrl(k3s.kubeletArgs),
    sink: deps.sink,
    logger: logger.child({ part: 'k3s' }),
    // fleetlet's whole shutdown has 10 s; k3s itself exits almost at once after SIGTERM.
    timings: { graceMs: 7_000 },
    beforeLaunch: checkIdentity,
  });

  // Downloads a crash cut short are never renamed, so nothing else would remove them. Done while the agent is built,
  // before the commands part resumes an interrupted upgrade (which downloads again when its file is gone).
  const swept = removeDownloadLeftovers(k3s.binaryPath);
  if (swept.length > 0) logger.warn({ files: swept }, 'removed partial downloads a previous run left beside the k3s binary');

  let control: SupervisedK3sControl | undefined;
  try {
    const installer = new K3sInstaller({
      binaryPath: k3s.binaryPath,
      arch: k3sArch(process.arch),
      artifactUrl: k3s.artifactUrl,
      channel: k3s.channel,
      channelUrl: k3s.channelUrl,
      version: k3s.version,
    });
    control = new SupervisedK3sControl(supervisor, installer, settings, k3s.binaryPath);
  } catch (err) {
    logger.warn({ err }, 'k3s upgrades are unavailable on this architecture');
  }

  const part = {
    name: 'k3s',
    start: async () => {
      // Also when a running k3s is adopted (no launch follows): the inventory wants its version and fingerprints.
      // Without a binary nothing is written to the node config dir until k3s is installed.
      if (existsSync(k3s.binaryPath)) {
        try {
          checkIdentity();
        } catch (err) {
          logger.error({ err }, 'cannot check the node identity files; retried before k3s starts');
        }
        version = await binaryVersion(k3s.binaryPath);
      }
      await supervisor.start();
    },
    // A stop or restart of fleetlet leaves k3s running for the next fleetlet to adopt; only an explicit act
    // (`fleetlet k3s stop`, a k3s.stop command, `fleetlet uninstall`) stops k3s.
    stop: () => supervisor.stop(),
  };

  const view = (): K3sView => {
    const status = supervisor.status();
    const nodeName = (k3s.nodeName ?? hostname()).toLowerCase();
    // What runs, once the supervisor knows; else what is installed.
    const shown = status.version ?? version;
    return {
      state: status.state,
      healthy: status.state === 'running-healthy',
      ...(shown ? { version: shown } : {}),
      ...(nodeName ? { nodeName: k3s.withNodeId && identity?.nodeId ? `${nodeName}-${identity.nodeId}` : nodeName } : {}),
    };
  };

  const fingerprints = (): Record<string, string> => ({
    ...(identity ? { nodePassword: identity.passwordFingerprint } : {}),
    ...(deps.machine ? { machine: deps.machine.fingerprint } : {}),
  });

  return { part, control, supervisor, view, fingerprints };
}
