import type { Config } from '../config/schema.js';
import type { Logger } from '../lib/logger.js';
import type { Part } from './lifecycle.js';
import { ProgressMonitor } from './progress-monitor.js';
import { SystemdNotifier } from './systemd-notify.js';
import { registerWatchedParts, type WatchedParts } from './watched-parts.js';

export interface WatchdogPartDeps {
  /** NOTIFY_SOCKET and WATCHDOG_USEC come from here; without them the part does nothing. */
  env: Record<string, string | undefined>;
  logger: Logger;
}

/**
 * systemd's readiness and watchdog, from the `telemetry` and `broker` sections (which bound each loop's silence):
 * the heartbeats the other parts beat, and the part that pings the watchdog only while every one of them shows progress.
 */
export function buildWatchdogPart(config: Pick<Config, 'telemetry' | 'broker'>, deps: WatchdogPartDeps): { watched: WatchedParts; part: Part } {
  const progress = new ProgressMonitor();
  const watched = registerWatchedParts(progress, config);
  return { watched, part: new SystemdNotifier(deps.env, deps.logger).asPart(progress) };
}
