import { z } from 'zod';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DownloadDeadlineError, downloadToTemp, freeBytesIn } from '../lib/download.js';
import { DiskFullError } from '../lib/errors.js';
import { sha256OfFileIfPresent } from '../lib/files.js';
import { exists, keepPrevious, restorePrevious, swapIn } from './binary-swap.js';
import { guardRanForThisStart, guardUnitLine, readMarker, writeGuard, writeMarker } from './agent-upgrade-guard.js';
import { expiredOutcome, type CommandHandler, type CommandContext, type HandlerOutcome } from './handler.js';
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
  /** Connected to the broker and publishing: what a new binary must reach to confirm itself. */
  agentHealthy: () => boolean;
  /** Stops the agent cleanly; the service manager starts it again (Restart=always), now from the new binary. */
  requestRestart: () => void;
  /** When this process started: the confirmation deadline counts from here. */
  startedAt: number;
  /** systemd's INVOCATION_ID of this start; the guard records the one it ran for. */
  invocationId: string | undefined;
}

const StepSchema = z.discriminatedUnion('state', [
  z.object({ state: z.literal('swap'), newPath: z.string(), newSha: z.string(), fromSha: z.string() }),
  z.object({ state: z.literal('restarting'), newSha: z.string(), fromSha: z.string() }),
]);

/**
 * `agent.upgrade`: self-update of the fleetlet binary. Download and verify, keep the old binary as `.previous`,
 * open a trial (marker file read by the shell guard), swap, restart. The new binary confirms the trial once it is
 * healthy within the bound; if it crashes or never gets there, the guard (or the new binary itself, when it still
 * runs) puts the previous one back, and the old binary reports the command failed.
 */
export function agentUpgradeHandler(options: AgentUpgradeOptions): CommandHandler<'agent.upgrade'> {
  return {
    type: 'agent.upgrade',
    onInterrupted: 'resume',
    // Only the download can be cancelled: once the swap began, the trial decides.
    cancellable: (step) => step === undefined,
    run: async (context) => {
      const saved = StepSchema.safeParse(context.savedStep);
      if (saved.success && saved.data.state === 'restarting') return afterRestart(context, options);
      const resumed = saved.success && saved.data.state === 'swap' ? await resumeSwap(saved.data, context, options) : undefined;
      const step = resumed ?? (await prepare(context, options));
      if ('status' in step) return step;
      if (context.cancelled()) {
        // The cancel came as the download completed: stop before anything is changed.
        await rm(step.newPath, { force: true });
        return { status: 'failed', reason: 'cancelled', detail: 'cancelled after the download; nothing was changed' };
      }
      context.progress('swap', `keeping ${options.binaryPath}.previous, opening a trial`);
      await writeGuard(options.stateDir);
      await keepPrevious(options.binaryPath, step.fromSha);
      await writeMarker(options.stateDir, {
        state: 'trial',
        attempts: 0,
        binary: options.binaryPath,
        commandId: context.command.id,
        fromVersion: options.currentVersion,
        toVersion: context.command.args.version,
        newSha: step.newSha,
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
    return { status: 'failed', reason, detail: `${err instanceof Error ? err.message : String(err)}; nothing was changed` };
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

/** Runs in the process that started after the swap: the new binary on trial, or the old one after a revert. */
async function afterRestart(context: CommandContext<'agent.upgrade'>, options: AgentUpgradeOptions): Promise<HandlerOutcome> {
  const { args } = context.command;
  const marker = await readMarker(options.stateDir);
  if (!marker || marker.commandId !== context.command.id) {
    return { status: 'failed', reason: 'interrupted', detail: 'the upgrade trial record is missing; the installed binary was left as it is' };
  }
  if (marker.state === 'confirmed') return { status: 'succeeded', detail: `fleetlet ${marker.fromVersion} -> ${args.version}, confirmed healthy` };
  if (marker.state === 'reverted') {
    return {
      status: 'failed',
      reason: 'reverted',
      detail: `fleetlet ${args.version} did not confirm itself healthy within ${options.confirmTimeoutMs / 1000} s; ${marker.fromVersion} was restored`,
    };
  }
  const deadline = options.startedAt + options.confirmTimeoutMs;
  while (!options.agentHealthy() && Date.now() < deadline && !context.signal.aborted) {
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  if (context.signal.aborted) throw new Error('stopping during the upgrade trial');
  if (options.agentHealthy()) {
    await writeMarker(options.stateDir, { ...marker, state: 'confirmed' });
    return { status: 'succeeded', detail: `fleetlet ${marker.fromVersion} -> ${args.version}, confirmed healthy` };
  }
  // Still running but not healthy: revert now rather than wait for the guard, then start the old binary.
  const step = StepSchema.parse(context.savedStep);
  await restorePrevious(options.binaryPath, step.fromSha);
  await writeMarker(options.stateDir, { ...marker, state: 'reverted' });
  context.logger.error({ version: args.version }, 'new fleetlet binary did not become healthy in time; previous one restored, restarting');
  options.requestRestart();
  return { status: 'pending' };
}
