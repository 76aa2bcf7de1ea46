import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { k3sChildEnvironment } from './child-env.js';
import type { FetchBounds, K3sInstaller } from './installer.js';
import type { NodeSettings, NodeSettingsFile } from './node-settings.js';
import type { FetchedBinary, HealthVerdict, K3sControl, K3sRelease } from './ports.js';
import type { K3sSupervisor } from './supervisor.js';

const run = promisify(execFile);

/** `k3s --version` prints "k3s version v1.36.3+k3s1 (469d009f)". */
export async function binaryVersion(binaryPath: string): Promise<string | undefined> {
  if (!existsSync(binaryPath)) return undefined;
  try {
    // Like the agent, any k3s binary run sees only the allow-listed environment, never fleetlet's secrets.
    const { stdout } = await run(binaryPath, ['--version'], { timeout: 15_000, maxBuffer: 64 * 1024, env: k3sChildEnvironment(process.env) });
    return /k3s version (v\S+)/.exec(stdout)?.[1];
  } catch {
    return undefined;
  }
}

/** The K3sControl of ports.ts over the supervisor, the installer and the node settings file. */
export class SupervisedK3sControl implements K3sControl {
  constructor(
    private readonly supervisor: K3sSupervisor,
    private readonly installer: K3sInstaller,
    private readonly settings: NodeSettingsFile,
    readonly binaryPath: string,
    private readonly pollMs = 500,
  ) {}

  installedVersion(): Promise<string | undefined> {
    return binaryVersion(this.binaryPath);
  }

  async fetchRelease(
    release: K3sRelease,
    onProgress?: (bytes: number, total: number | undefined) => void,
    bounds: FetchBounds = {},
  ): Promise<FetchedBinary> {
    const temp = await this.installer.fetchBinary(release.version, {
      ...(release.artifactUrl ? { url: release.artifactUrl } : {}),
      ...(release.sha256 ? { sha256: release.sha256 } : {}),
      onProgress,
      ...bounds,
    });
    return { path: temp.path, sha256: temp.sha256, bytes: temp.bytes };
  }

  freeBytes(dir: string = dirname(this.binaryPath)): Promise<number> {
    return this.installer.freeBytesIn(dir);
  }

  restart(): Promise<void> {
    return this.supervisor.restart();
  }

  stopK3s(by: string): Promise<void> {
    return this.supervisor.stopK3s(by);
  }

  /**
   * Healthy = kubelet healthz answers and the node registered since the last start, and, when `expectVersion` is
   * given, the running k3s was started from that version (not from a binary read before an upgrade swapped it).
   * A k3s adopted from a previous fleetlet (restarted in the middle of a health wait) registered before this one
   * watched its log: for it, kubelet healthz is the evidence there is, and a healthy k3s is not rolled back for a
   * line it logged before.
   */
  async waitHealthy(timeoutMs: number, signal: AbortSignal, expectVersion?: string): Promise<HealthVerdict> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = this.supervisor.status();
      const versionOk = expectVersion === undefined || status.version === expectVersion;
      if (status.state === 'running-healthy' && (status.registered || status.adopted) && versionOk) return { healthy: true };
      if (Date.now() >= deadline || signal.aborted) {
        const why = !versionOk
          ? `k3s ${status.version ?? 'of unknown version'} runs, not ${expectVersion}`
          : status.problem
            ? `${status.problem.kind}: ${status.problem.remedy}`
            : `k3s is ${status.state}`;
        return { healthy: false, reason: `not healthy within ${timeoutMs} ms (${why})` };
      }
      await new Promise((resolve) => setTimeout(resolve, this.pollMs));
    }
  }

  applyNodeSettings(commandId: string, changes: NodeSettings): Promise<void> {
    return this.settings.apply(commandId, changes);
  }

  revertNodeSettings(commandId: string): Promise<void> {
    return this.settings.revert(commandId);
  }

  async recentLogLines(max: number): Promise<string[]> {
    return this.supervisor.recentLogLines(max);
  }
}
