import type { Config } from '../config/schema.js';
import type { Heartbeat } from '../lib/heartbeat.js';
import type { ProgressMonitor } from './progress-monitor.js';

export interface WatchedParts {
  /** A sample taken and queued, every telemetry interval. */
  sampler: Heartbeat;
  /** A write the state database answered; the status of every interval is one. */
  database: Heartbeat;
  /** A connection attempt, a packet from the broker or a closed connection. */
  link: Heartbeat;
  /** The command queue: idle, or running a command that has not expired yet. */
  commands: Heartbeat;
}

/** Slack for a loaded machine: a Pi Zero under a k3s image pull can be seconds late on any timer. */
const SLACK_MS = 30_000;

/**
 * The parts whose progress the watchdog waits for, each with the longest silence its loop can show when it works:
 * the sampler and the database write every interval (a late tick or two is tolerated); the link hears the broker at
 * least every keepalive while connected, and tries again at least every reconnect cap while not.
 */
export function registerWatchedParts(monitor: ProgressMonitor, config: Pick<Config, 'telemetry' | 'broker'>): WatchedParts {
  const intervalMs = config.telemetry.intervalSeconds * 1000;
  const sampleAllowanceMs = Math.max(3 * intervalMs, intervalMs + SLACK_MS);
  const { reconnect, keepaliveSeconds } = config.broker;
  return {
    sampler: monitor.register('telemetry-sampler', sampleAllowanceMs),
    database: monitor.register('state-database-writes', sampleAllowanceMs),
    link: monitor.register('mqtt-link', reconnect.capMs + 2 * keepaliveSeconds * 1000 + SLACK_MS),
    commands: monitor.register('command-queue', sampleAllowanceMs),
  };
}
