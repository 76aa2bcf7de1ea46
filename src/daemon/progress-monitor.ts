import type { Heartbeat } from '../lib/heartbeat.js';
import type { Outbox } from '../store/outbox.js';

/** A registered part whose heartbeat is older than it may be. */
export interface StuckPart {
  name: string;
  silentMs: number;
  allowedMs: number;
}

interface Entry {
  name: string;
  allowedMs: number;
  /** Monotonic time of the last beat (or of the registration), and how long it stays fresh from then. */
  since: number;
  freshForMs: number;
  idle: boolean;
}

/**
 * The heartbeats of the daemon's parts. A part is stuck when its last sign of progress is older than its own
 * allowance; an idle part is never stuck. Monotonic time only: a wall clock set by the first NTP sync of a board
 * without a real-time clock must not make every part look silent for years.
 */
export class ProgressMonitor {
  private readonly entries: Entry[] = [];

  constructor(private readonly monotonicMs: () => number = () => performance.now()) {}

  /** A part's heartbeat; it must show progress within `allowedMs` of now, and of every beat after. */
  register(name: string, allowedMs: number): Heartbeat {
    const entry: Entry = { name, allowedMs, since: this.monotonicMs(), freshForMs: allowedMs, idle: false };
    this.entries.push(entry);
    const mark = (freshForMs: number, idle: boolean) => {
      entry.since = this.monotonicMs();
      entry.freshForMs = freshForMs;
      entry.idle = idle;
    };
    return {
      beat: () => mark(allowedMs, false),
      idle: () => mark(allowedMs, true),
      busyFor: (ms) => mark(Math.max(ms, allowedMs), false),
    };
  }

  stuck(): StuckPart[] {
    const now = this.monotonicMs();
    return this.entries
      .filter((entry) => !entry.idle && now - entry.since > entry.freshForMs)
      .map((entry) => ({ name: entry.name, silentMs: Math.round(now - entry.since), allowedMs: entry.freshForMs }));
  }
}

/**
 * The producers' outbox, beating `heartbeat` after every write the database answered. A write the outbox absorbed
 * on a full disk (it sheds and counts) answers too: a restart cannot free space, so a full disk is reported as an
 * event, not turned into a watchdog restart. A write that throws (I/O error, a lock held forever) does not beat.
 */
export function outboxWithWriteProgress(outbox: Outbox, heartbeat: Heartbeat): Outbox {
  return {
    enqueue: (record) => {
      const written = outbox.enqueue(record);
      heartbeat.beat();
      return written;
    },
  };
}
