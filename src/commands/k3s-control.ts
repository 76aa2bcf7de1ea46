/**
 * What commands need from k3s, and nothing more (DESIGN.md: commands get a narrow control, never the supervisor).
 * The composition root adapts the k3s part to it.
 */
export interface K3sRelease {
  version: string;
  /** A mirror or air-gapped URL of the binary; without it the configured release source is used. */
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
