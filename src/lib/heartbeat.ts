/**
 * How a long-running part tells the daemon that its work is moving (see daemon/progress-monitor.ts). The systemd
 * watchdog is pinged only while every part's heartbeat is fresh, so each part must report the liveness of its own
 * loop, not of outside traffic: a link waiting for a broker that is down still beats at every attempt.
 */
export interface Heartbeat {
  /** The part made progress now; it stays fresh for the allowance it was registered with. */
  beat(): void;
  /** The part has nothing to do (an empty queue): it counts as progressing until its next beat or busyFor. */
  idle(): void;
  /** The part works on one long task that may legitimately show nothing for `ms` (e.g. until a command expires). */
  busyFor(ms: number): void;
}
