/**
 * What the k3s room offers the rest of fleetlet, as types only. Commands drive k3s through a K3sControl (never the
 * supervisor, DESIGN.md), telemetry reads a K3sView, and the composition root routes k3s events through a
 * K3sEventSink. Other features may `import type` from this file and from no other file of this room
 * (scripts/check-deps.ts enforces it): each contract is declared once, and the compiler checks both sides against it.
 */
export type { K3sEvent, K3sEventKind, K3sEventSink } from './events.js';

export interface K3sRelease {
  version: string;
  /** Full URL of the binary (a mirror or an air-gapped server); the configured artifact URL otherwise. */
  artifactUrl?: string;
  sha256?: string;
}

/** A downloaded binary whose sha256 matched, in a temp file on the same file system as the installed binary. */
export interface FetchedBinary {
  path: string;
  sha256: string;
  bytes: number;
}

/** What bounds a command's download: its expiry, the stop/cancel signal, a size limit and a silence limit. */
export interface DownloadBounds {
  signal: AbortSignal;
  /** Epoch ms, the command's expiresAt. */
  deadline: number;
  maxBytes: number;
  idleTimeoutMs: number;
}

/** Node settings a `k3s.configure` command may change; absent fields stay as they are. */
export interface K3sNodeChanges {
  labels?: Record<string, string>;
  taints?: string[];
  serverUrl?: string;
  /** Secret: written where k3s reads it (a 0600 token file), never logged or echoed in a result. */
  joinToken?: string;
}

export type HealthVerdict = { healthy: true } | { healthy: false; reason: string };

/** The narrow handle commands get on k3s: they restart, upgrade and reconfigure it through this. */
export interface K3sControl {
  readonly binaryPath: string;
  /** The version the installed binary reports, or undefined when there is none. */
  installedVersion(): Promise<string | undefined>;
  /** Downloads and verifies a release binary beside binaryPath, within `bounds`. Throws when it cannot be verified. */
  fetchRelease(release: K3sRelease, onProgress?: (bytes: number, total: number | undefined) => void, bounds?: DownloadBounds): Promise<FetchedBinary>;
  freeBytes(dir: string): Promise<number>;
  /** Stops the running k3s (one SIGTERM) and starts the binary now at binaryPath; lifts a stop (see stop). */
  restart(): Promise<void>;
  /** Stops k3s (one SIGTERM) and keeps it stopped, also across agent restarts, until restart(). */
  stopK3s(by: string): Promise<void>;
  /**
   * Resolves once k3s is healthy (kubelet healthz and node registered since the last restart) and, when given,
   * runs `expectVersion`; or with why not.
   */
  waitHealthy(timeoutMs: number, signal: AbortSignal, expectVersion?: string): Promise<HealthVerdict>;
  /**
   * Writes the changed settings for the next start, after keeping (durably) the ones from before command
   * `commandId` for revertNodeSettings. Repeating it for the same command gives the same result.
   */
  applyNodeSettings(commandId: string, changes: K3sNodeChanges): Promise<void>;
  /** Puts back the settings from before command `commandId`; repeating it writes the same settings again. */
  revertNodeSettings(commandId: string): Promise<void>;
  /** The newest lines of k3s's own log, oldest first, at most `max`. */
  recentLogLines(max: number): Promise<string[]>;
}

/** What telemetry shows of k3s in status and inventory. */
export interface K3sView {
  /** The supervisor's state name, e.g. disabled, starting, running-healthy, crash-loop. */
  state: string;
  healthy: boolean;
  version?: string;
  nodeName?: string;
}
