import { z } from 'zod';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DownloadDeadlineError, downloadToTemp, freeBytesIn } from '../lib/download.js';
import { DiskFullError, errorMessage } from '../lib/errors.js';
import { sha256OfFileIfPresent } from '../lib/files.js';
import { exists, keepPrevious, swapIn } from './binary-swap.js';
import { guardRanForThisStart, guardUnitLine, readMarker, writeGuard, writeMarker, type TrialMarker } from './agent-upgrade-guard.js';
import type { TrialOutcome } from './agent-upgrade-trial.js';
import { expiredOutcome, type CommandHandler, type CommandContext, type HandlerOutcome } from './handler.js';
import type { ReleaseCheck, ReleaseVerdict } from './trust-state.js';
import { compareVersions } from './versions.js';

export interface AgentUpgradeOptions {
  binaryPath: string;
  stateDir: string;
  currentVersion: string;
  confirmTimeoutMs: number;
  maxArtifactBytes: number;
  /** Free bytes needed beside the binary before the download starts. */
  minFreeBytes: number;
  /** A download that receives nothing for this long fails. */
  downloadIdleTimeoutMs: number;
  /** Takes a durable snapshot of the state database (before the swap) and returns its path. */
  snapshotState: () => Promise<string>;
  /** The verdict on the trial this process judges (AgentUpgradeTrial); undefined when it judges none. */
  trialVerdict: () => Promise<TrialOutcome | undefined>;
  /** Stops the agent cleanly; the service manager starts it again (Restart=always), now from the new binary. */
  requestRestart: () => void;
  /** systemd's INVOCATION_ID of this start; the guard records the one it ran for. */
  invocationId: string | undefined;
  /** The release signature check of the trust in force (TrustState.checkRelease); absent: none is asked. */
  checkRelease?: (release: ReleaseCheck) => ReleaseVerdict;
}

const StepSchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('swap'), newPath: z.string(), newSha: z.string(), fromSha: z.string() }),
  z.object({ state: z.literal('restarting'), newSha: z.string(), fromSha: z.string() }),
]);

/**
 * `agent.upgrade`: self-update of the fleetlet binary. Download and verify, keep the old binary as `.previous`,
 * snapshot the state database, open a trial (marker file read by the shell guard), swap, restart. The new binary
 * confirms the trial once it is healthy within the bound (AgentUpgradeTrial); if it crashes or never gets there, the
 * guard (or the new binary itself, when it still runs) puts the previous one back, the old binary restores the
 * database snapshot at its start, and reports the command failed.
 */
export function agentUpgradeHandler(options: AgentUpgradeOptions): CommandHandler<'agent.upgrade'> {
  return {
    type: 'agent.upgrade',
    onInterrupted: 'resume',
    // Only the download can be cancelled: once the swap began, the trial decides.
    cancellable: (step) => step === undefined,
    run: async (context) => {
      // Whichever binary runs this, a trial of this command that has ended decides the outcome: after a revert the
      // journal may come from the snapshot, whose saved step is still the swap.
      const marker = await readMarker(options.stateDir);
      if (marker?.commandId === context.command.id && marker.state !== 'trial') return concluded(marker, options);
      const saved = StepSchema.safeParse(context.savedStep);
      if (saved.success && saved.data.state === 'restarting') return afterRestart(context, options);
      const resumed = saved.success && saved.data.state === 'swap' ? await resumeSwap(saved.data, context, options) : undefined;
      const step = resumed ?? (await prepare(context, options));
      if ('status' in step) return step;
      if (marker?.commandId === context.command.id && (await sha256OfFileIfPresent(options.binaryPath)) === step.newSha) {
        // Cut after the swap, before the step was saved: this process is the new binary on trial. Taking a snapshot
        // or opening the trial again now would overwrite what a revert needs.
        context.saveStep({ state: 'restarting', newSha: step.newSha, fromSha: step.fromSha }, true);
        return afterRestart(context, options);
      }
      if (context.cancelled()) {
        // The cancel came as the download completed: stop before anything is changed.
        await rm(step.newPath, { force: true });
        return { status: 'failed', reason: 'cancelled', detail: 'cancelled after the download; nothing was changed' };
      }
      context.progress('swap', `keeping ${options.binaryPath}.previous, opening a trial`);
      await writeGuard(options.stateDir);
      await keepPrevious(options.binaryPath, step.fromSha);
      const snapshot = await options.snapshotState();
      await writeMarker(options.stateDir, {
        state: 'trial',
        attempts: 0,
        binary: options.binaryPath,
        commandId: context.command.id,
        fromVersion: options.currentVersion,
        toVersion: context.command.args.version,
        newSha: step.newSha,
        fromSha: step.fromSha,
        snapshot,
        unmet: '',
        restored: '',
      });
      await swapIn(step.newPath, options.binaryPath, step.newSha);
      context.saveStep({ state: 'restarting', newSha: step.newSha, fromSha: step.fromSha }, true);
      context.progress('restarting', `into fleetlet ${context.command.args.version}`);
      options.requestRestart();
      return { status: 'pending' };
    },
  };
}

async function prepare(
  context: CommandContext<'agent.upgrade'>,
  options: AgentUpgradeOptions,
): Promise<HandlerOutcome | { newPath: string; newSha: string; fromSha: string }> {
  const { args } = context.command;
  const open = await readMarker(options.stateDir);
  if (open?.state === 'trial' && open.commandId !== context.command.id) {
    // Until the running trial confirms or reverts, "already installed" would be a premature answer.
    return { status: 'failed', reason: 'trial_in_progress', detail: `fleetlet ${open.toVersion} is still on trial (command ${open.commandId})` };
  }
  const fromSha = await sha256OfFileIfPresent(options.binaryPath);
  if (!fromSha) return { status: 'failed', reason: 'not_installed', detail: `no fleetlet binary at ${options.binaryPath}` };
  if (fromSha === args.sha256) return { status: 'succeeded', detail: `fleetlet ${args.version} is already installed` };
  if (compareVersions(args.version, options.currentVersion) < 0) {
    return { status: 'failed', reason: 'downgrade_refused', detail: `${args.version} is older than the running ${options.currentVersion}` };
  }
  // Before anything is downloaded: a build no release key signed is not fetched at all.
  const release = options.checkRelease?.(args);
  if (release && !release.ok) return { status: 'failed', reason: release.reason, detail: `${release.detail}; nothing was changed` };
  if (!(await guardRanForThisStart(options.stateDir, options.invocationId))) {
    return {
      status: 'failed',
      reason: 'no_revert_guard',
      detail: `the service does not run the upgrade guard, so a broken build could not be reverted; add "${guardUnitLine(options.stateDir)}" to the unit`,
    };
  }
  const expired = expiredOutcome(context.command);
  if (expired) return expired;
  const dir = dirname(options.binaryPath);
  const free = await freeBytesIn(dir);
  if (free < options.minFreeBytes) {
    return { status: 'failed', reason: 'disk_space', detail: `${free} bytes free beside ${options.binaryPath}, ${options.minFreeBytes} needed; nothing was changed` };
  }
  context.progress('download', args.artifactUrl);
  let fetched;
  try {
    fetched = await downloadToTemp(args.artifactUrl, options.binaryPath, {
      maxBytes: options.maxArtifactBytes,
      idleTimeoutMs: options.downloadIdleTimeoutMs,
      deadline: context.command.expiresAt,
      signal: context.signal,
      expectedSha256: args.sha256,
      beforeBody: async (total) => {
        const left = await freeBytesIn(dir);
        if (total !== undefined && total > left) throw new DiskFullError(`${total} bytes to download, ${left} free beside ${options.binaryPath}`);
      },
    });
  } catch (err) {
    const reason = err instanceof DownloadDeadlineError ? 'expired' : err instanceof DiskFullError ? 'disk_space' : 'download_failed';
    return { status: 'failed', reason, detail: `${errorMessage(err)}; nothing was changed` };
  }
  const step = { state: 'swap' as const, newPath: fetched.path, newSha: fetched.sha256, fromSha };
  context.saveStep(step, true);
  return step;
}

/**
 * A restart interrupted the upgrade between the download and the swap. A swap already done must be finished; one
 * not yet done goes on only while the command is valid and its download is still there (a power cut or the sweep
 * of leftovers at start may have removed it: then it is downloaded again).
 */
async function resumeSwap(
  step: { newPath: string; newSha: string; fromSha: string },
  context: CommandContext<'agent.upgrade'>,
  options: AgentUpgradeOptions,
): Promise<HandlerOutcome | { newPath: string; newSha: string; fromSha: string } | undefined> {
  if ((await sha256OfFileIfPresent(options.binaryPath)) === step.newSha) return step;
  const expired = expiredOutcome(context.command);
  if (expired) {
    await rm(step.newPath, { force: true });
    return expired;
  }
  return (await exists(step.newPath)) ? step : undefined;
}

/**
 * Runs in the process that started after the swap. The trial itself (AgentUpgradeTrial) judges the new binary apart
 * from this handler; here the command only waits for the verdict. A revert restarts into the old binary, which
 * reports it, after it put the database snapshot back.
 */
async function afterRestart(context: CommandContext<'agent.upgrade'>, options: AgentUpgradeOptions): Promise<HandlerOutcome> {
  if ((await readMarker(options.stateDir))?.commandId !== context.command.id) {
    return { status: 'failed', reason: 'interrupted', detail: 'the upgrade trial record is missing; the installed binary was left as it is' };
  }
  await Promise.race([options.trialVerdict(), whenAborted(context.signal)]);
  if (context.signal.aborted) throw new Error('stopping during the upgrade trial');
  const marker = await readMarker(options.stateDir);
  // Reverted: the binary that comes back reports it. Still open: this process did not judge it (the binary was
  // replaced by other means); the guard decides at the next start.
  if (!marker || marker.state !== 'confirmed') return { status: 'pending' };
  return concluded(marker, options);
}

function whenAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

function concluded(marker: TrialMarker, options: AgentUpgradeOptions): HandlerOutcome {
  if (marker.state === 'confirmed') return { status: 'succeeded', detail: `fleetlet ${marker.fromVersion} -> ${marker.toVersion}, confirmed healthy` };
  const why = marker.unmet ? `not shown healthy: ${marker.unmet.split(',').join(', ')}` : 'it stopped before it could';
  const state = marker.restored ? ', with the state database from before the upgrade' : '';
  return {
    status: 'failed',
    reason: 'reverted',
    detail: `fleetlet ${marker.toVersion} did not confirm itself healthy within ${options.confirmTimeoutMs / 1000} s (${why}); ${marker.fromVersion} was restored${state}`,
  };
}
