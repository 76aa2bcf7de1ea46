import { sha256OfFileIfPresent } from '../lib/files.js';
import type { Logger } from '../lib/logger.js';
import { dropSnapshot } from '../store/snapshot.js';
import { readMarker, writeGuard, writeMarker, type TrialMarker } from './agent-upgrade-guard.js';
import { restorePrevious } from './binary-swap.js';

/** A named proof of health; false while the part it names has not shown it works. */
export type HealthCheck = () => boolean;

export interface AgentTrialOptions {
  stateDir: string;
  confirmTimeoutMs: number;
  /** When this process started: the confirmation deadline counts from here. */
  startedAt: number;
  /**
   * What a new binary must show before it is confirmed, by name: e.g. the link subscribed to the command topics,
   * telemetry sampled, the database written, the trial's own command verified again by this build.
   */
  checks: (marker: TrialMarker) => Record<string, HealthCheck>;
  /** Stops the agent cleanly; the service manager starts it again, from the restored binary. */
  requestRestart: () => void;
  logger: Logger;
  pollMs?: number;
}

export type TrialOutcome = 'confirmed' | 'reverted' | 'stopped';

/**
 * The new binary's side of a self-update trial, run at its start when the marker says a trial is open. It
 * confirms the binary once every check passes, or, at the deadline, puts the previous binary back and restarts
 * into it (the guard does the same without this code if the new binary cannot even run). Deliberately apart from
 * the command router: a build whose command path is broken must still be judged and reverted.
 *
 * Confirming is also when the new binary takes over the safety net: it writes the guard and drops the database
 * snapshot. Until then, nothing of the new build touches either.
 */
export class AgentUpgradeTrial {
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private running: Promise<TrialOutcome | undefined> | undefined;

  constructor(private readonly options: AgentTrialOptions) {}

  /** Judges the trial open at start, if any, in the background. */
  start(): void {
    this.running ??= this.judge().catch((err: unknown) => {
      this.options.logger.error({ err }, 'the self-update trial failed to run');
      return undefined;
    });
  }

  /** What became of the trial judged by this process (undefined: there was none to judge). */
  verdict(): Promise<TrialOutcome | undefined> {
    return this.running ?? Promise.resolve(undefined);
  }

  private async judge(): Promise<TrialOutcome | undefined> {
    const { options } = this;
    const marker = await readMarker(options.stateDir);
    // A confirmation cut short by a power cut is finished here: the snapshot has no more use.
    if (marker?.state === 'confirmed') await dropSnapshot(options.stateDir);
    if (marker?.state !== 'trial') return undefined;
    // A trial belongs to the new binary: the old one, started again because the swap was cut short, resumes it instead.
    if ((await sha256OfFileIfPresent(marker.binary)) !== marker.newSha) return undefined;
    const checks = options.checks(marker);
    const deadline = options.startedAt + options.confirmTimeoutMs;
    let unmet = failing(checks);
    while (unmet.length > 0 && Date.now() < deadline && !this.stopped) {
      await this.sleep(Math.min(options.pollMs ?? 250, Math.max(0, deadline - Date.now())));
      unmet = failing(checks);
    }
    if (unmet.length === 0) {
      await writeMarker(options.stateDir, { ...marker, state: 'confirmed', unmet: '' });
      await writeGuard(options.stateDir);
      await dropSnapshot(options.stateDir);
      options.logger.info({ version: marker.toVersion }, 'self-update confirmed: this binary passed every health check');
      return 'confirmed';
    }
    if (this.stopped) return 'stopped';
    try {
      await restorePrevious(marker.binary, marker.fromSha);
      await writeMarker(options.stateDir, { ...marker, state: 'reverted', unmet: unmet.join(',') });
      options.logger.error(
        { version: marker.toVersion, unmet },
        'new fleetlet binary did not become healthy in time; previous one restored, restarting',
      );
    } catch (err) {
      // The trial stays open with its one start used: the guard reverts at the next start.
      options.logger.error({ err, unmet }, 'new fleetlet binary did not become healthy in time and could not restore the previous one; restarting');
    }
    options.requestRestart();
    return 'reverted';
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.wake?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }
}

function failing(checks: Record<string, HealthCheck>): string[] {
  return Object.entries(checks)
    .filter(([, check]) => {
      try {
        return !check();
      } catch {
        return true;
      }
    })
    .map(([name]) => name);
}
