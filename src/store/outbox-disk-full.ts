import type { Logger } from '../lib/logger.js';

/** Where a condition worth keeping goes (the local event log). */
export interface ConditionRecorder {
  record(kind: string, detail: Record<string, unknown>): void;
}

/**
 * A disk-full episode of the outbox, from the first write refused for lack of space to the next write that succeeds:
 * logged and recorded once at each end, not at every refused write.
 */
export class DiskFullEpisode {
  private active = false;

  constructor(
    private readonly logger: Logger | undefined,
    private readonly conditions: ConditionRecorder | undefined,
  ) {}

  start(at: number | undefined): void {
    if (this.active) return;
    this.active = true;
    this.logger?.warn('outbox: disk full; shedding status records to keep going');
    this.record('outbox.disk_full', { at });
  }

  endIfActive(at: number): void {
    if (!this.active) return;
    this.active = false;
    this.logger?.info('outbox: writes succeed again after a disk-full condition');
    this.record('outbox.disk_full_cleared', { at });
  }

  private record(kind: string, detail: Record<string, unknown>): void {
    try {
      this.conditions?.record(kind, detail);
    } catch (err) {
      // The event log lives on the same full disk; the condition is also in stats() and the next status.
      this.logger?.debug({ err, kind }, 'outbox: could not record a condition');
    }
  }
}
