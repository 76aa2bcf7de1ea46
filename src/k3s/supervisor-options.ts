import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../lib/logger.js';
import type { AgentInvocation } from './args.js';
import type { ExitInfo } from './agent-process.js';
import type { K3sEventKind, K3sEventSink } from './events.js';

export interface SupervisorTimings {
  /** After the one SIGTERM, how long k3s may take before SIGKILL. */
  graceMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** Healthy this long, and the backoff and crash-loop history are forgotten. */
  stableMs: number;
  /** This many exits within crashLoopWindowMs is a crash loop... */
  crashLoopExits: number;
  crashLoopWindowMs: number;
  /** ...retried this slowly. */
  crashLoopRetryMs: number;
  healthIntervalMs: number;
  /** Consecutive failed probes before a running agent counts as unhealthy. */
  unhealthyAfterFailures: number;
  probeTimeoutMs: number;
  notInstalledRetryMs: number;
  logPollMs: number;
  adoptPollMs: number;
  /** While k3s is held (stopped on request), how often to look whether the hold was lifted from outside. */
  holdPollMs: number;
}

export const DEFAULT_TIMINGS: SupervisorTimings = {
  graceMs: 30_000,
  backoffBaseMs: 2_000,
  backoffCapMs: 60_000,
  stableMs: 10 * 60_000,
  crashLoopExits: 5,
  crashLoopWindowMs: 10 * 60_000,
  crashLoopRetryMs: 5 * 60_000,
  healthIntervalMs: 5_000,
  unhealthyAfterFailures: 3,
  probeTimeoutMs: 2_000,
  notInstalledRetryMs: 60_000,
  logPollMs: 500,
  adoptPollMs: 1_000,
  holdPollMs: 5_000,
};

export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => sleep(ms, undefined, { signal }),
};

export interface SupervisorOptions {
  binaryPath: string;
  /** k3s's data dir, where the real binary unpacks the copy it re-execs into (the adoption check looks there). */
  dataDir?: string;
  /** The version a binary reports, read before each start; the status then says what runs. */
  binaryVersion?: (binaryPath: string) => Promise<string | undefined>;
  /** Rebuilt before every start, so changed settings apply on the next restart. */
  invocation: () => AgentInvocation;
  /** fleetlet's environment; k3s gets only its allow-listed variables (child-env.ts). */
  baseEnv: Record<string, string | undefined>;
  /** Further variables of baseEnv k3s gets (k3s.passEnv): names, or prefixes ending in "*". */
  passEnv?: readonly string[];
  /** Holds the process record, k3s's log file and the last status. No "k3s" in it: see DESIGN.md. */
  workDir: string;
  healthzUrl: string;
  sink: K3sEventSink;
  logger: Logger;
  timings?: Partial<SupervisorTimings>;
  clock?: Clock;
  random?: () => number;
  /** Runs before every start (the node identity check); a throw delays the start like a crash. */
  beforeLaunch?: () => Promise<void> | void;
  logRingLines?: number;
  maxLogFileBytes?: number;
}

export type StateName =
  | 'stopped'
  | 'not-installed'
  | 'starting'
  | 'running-healthy'
  | 'running-unhealthy'
  | 'backoff'
  | 'crash-loop'
  | 'stopping'
  /** Stopped on request (`fleetlet k3s stop`, `k3s.stop`) and not started again until the hold is lifted. */
  | 'held';

export interface K3sProblem {
  kind: K3sEventKind;
  remedy: string;
  line: string;
  at: number;
}

export interface K3sStatus {
  state: StateName;
  since: number;
  pid?: number;
  /** The version of the binary the running k3s was started from, when known. */
  version?: string;
  adopted: boolean;
  /** Restarts since fleetlet started. */
  restarts: number;
  lastExit?: ExitInfo;
  /** The last known failure seen in k3s's log during the current run. */
  problem?: K3sProblem;
  /** Seen "Successfully registered node" (or another readiness line) during the current run. */
  registered: boolean;
  nextStartAt?: number;
}
