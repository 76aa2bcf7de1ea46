import { constants } from 'node:fs';
import { access, chmod, link, lstat, mkdir, rename, rm, symlink } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { downloadToTemp, freeBytesIn, type DownloadedFile } from '../lib/download.js';
import { InsufficientDiskError, k3sDownloadError } from './errors.js';
import {
  artifactUrl,
  expectedSha256,
  fetchSmallText,
  MAX_CHECKSUM_FILE_BYTES,
  parseChecksums,
  releaseArtifacts,
  resolveVersion,
  type HttpGet,
  type K3sArch,
} from './release.js';
import { fsyncDir, sha256OfFile } from '../lib/files.js';
import type { DownloadBounds } from './ports.js';

export type Progress = (receivedBytes: number, totalBytes: number | undefined) => void;

/** Bounds of one binary download; a command passes its own (its expiry, its abort signal). */
export type FetchBounds = Partial<DownloadBounds>;

/** The k3s binary is ~70 MiB; anything far larger is not a k3s binary. */
export const MAX_BINARY_BYTES = 512 * 1024 * 1024;
/** A mirror silent this long has stalled (the CLI's default; commands pass their configured one). */
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Assumed size when a mirror sends no Content-Length. */
const UNKNOWN_SIZE_ESTIMATE = 128 * 1024 * 1024;
/** Headroom kept free after the download so that the device does not run out of disk. */
const DISK_MARGIN_BYTES = 16 * 1024 * 1024;
/** install.sh's convenience links; created only where the command does not exist yet. */
const LINKED_COMMANDS = ['kubectl', 'crictl', 'ctr'] as const;

export interface InstallerOptions {
  binaryPath: string;
  arch: K3sArch;
  artifactUrl: string;
  channel: string;
  channelUrl: string;
  version?: string | undefined;
  /** Where kubectl/crictl/ctr links go; install.sh uses the binary's directory. */
  linkDir?: string;
  /** PATH searched for existing kubectl/crictl/ctr. */
  searchPath?: string;
  get?: HttpGet;
  /** Free bytes for the file system holding `dir`; statfs by default. */
  freeBytes?: (dir: string) => Promise<number>;
}

export interface InstallResult {
  version: string;
  binaryPath: string;
  sha256: string;
  /** False when the installed binary already had the release's hash. */
  changed: boolean;
  previousPath?: string;
  links: string[];
}

export function previousBinaryPath(binaryPath: string): string {
  return `${binaryPath}.previous`;
}

/**
 * Installs k3s releases atomically: verified temp file, fsync, rename over the binary, with the old binary kept as
 * `<binary>.previous` for rollback. Every failure before the rename leaves the installed binary untouched.
 */
export class K3sInstaller {
  private readonly get: HttpGet;
  private readonly freeBytes: (dir: string) => Promise<number>;

  constructor(private readonly options: InstallerOptions) {
    this.get = options.get ?? fetch;
    this.freeBytes = options.freeBytes ?? freeBytesIn;
  }

  async install(onProgress?: Progress): Promise<InstallResult> {
    const version = await resolveVersion(this.options, this.get);
    const expected = await this.expectedSha256(version);
    const { binaryPath } = this.options;
    if ((await exists(binaryPath)) && (await sha256OfFile(binaryPath)) === expected) {
      return { version, binaryPath, sha256: expected, changed: false, links: await this.createLinks() };
    }
    const temp = await this.fetchBinary(version, { sha256: expected, onProgress });
    const previousPath = await placeBinary(temp, binaryPath);
    return { version, binaryPath, sha256: expected, changed: true, previousPath, links: await this.createLinks() };
  }

  /** The release's sha256 of this architecture's binary, from its checksum file. */
  async expectedSha256(version: string): Promise<string> {
    const artifacts = releaseArtifacts(this.options.arch);
    const sumsUrl = artifactUrl(this.options.artifactUrl, version, artifacts.checksumName);
    const sums = parseChecksums(await fetchSmallText(sumsUrl, MAX_CHECKSUM_FILE_BYTES, this.get));
    return expectedSha256(sums, artifacts.binaryName, artifacts.checksumName);
  }

  /**
   * Downloads and verifies a release binary into a temp file beside the installed one (same file system, so the
   * caller's rename is atomic). `url` overrides the configured mirror; `sha256` skips the checksum file.
   */
  async fetchBinary(version: string, options: { url?: string; sha256?: string; onProgress?: Progress | undefined } & FetchBounds = {}): Promise<DownloadedFile> {
    const expected = options.sha256 ?? (await this.expectedSha256(version));
    const { binaryPath } = this.options;
    await mkdir(dirname(binaryPath), { recursive: true });
    const binaryUrl = options.url ?? artifactUrl(this.options.artifactUrl, version, releaseArtifacts(this.options.arch).binaryName);
    try {
      return await downloadToTemp(binaryUrl, binaryPath, {
        maxBytes: options.maxBytes ?? MAX_BINARY_BYTES,
        idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        deadline: options.deadline,
        signal: options.signal,
        expectedSha256: expected,
        onProgress: options.onProgress,
        beforeBody: (totalBytes) => this.checkDiskSpace(dirname(binaryPath), totalBytes ?? UNKNOWN_SIZE_ESTIMATE),
        get: this.get,
      });
    } catch (err) {
      throw k3sDownloadError(err, binaryUrl);
    }
  }

  freeBytesIn(dir: string): Promise<number> {
    return this.freeBytes(dir);
  }

  /** Puts the previous binary back. Returns false when there is none. */
  async rollback(): Promise<boolean> {
    const previous = previousBinaryPath(this.options.binaryPath);
    if (!(await exists(previous))) return false;
    await rename(previous, this.options.binaryPath);
    await fsyncDir(dirname(this.options.binaryPath));
    return true;
  }

  async checkDiskSpace(dir: string, neededBytes: number): Promise<void> {
    const free = await this.freeBytes(dir);
    const needed = neededBytes + DISK_MARGIN_BYTES;
    if (free < needed) throw new InsufficientDiskError(dir, needed, free);
  }

  /** Links kubectl, crictl and ctr to k3s where no such command exists (install.sh's rule). */
  async createLinks(): Promise<string[]> {
    const linkDir = this.options.linkDir ?? dirname(this.options.binaryPath);
    const searchPath = (this.options.searchPath ?? '').split(delimiter).filter(Boolean);
    const created: string[] = [];
    for (const command of LINKED_COMMANDS) {
      const target = join(linkDir, command);
      if ((await lstatOrUndefined(target)) || (await onPath(command, searchPath))) continue;
      await symlink(this.options.binaryPath, target);
      created.push(target);
    }
    return created;
  }
}

/**
 * Renames the verified temp file over the binary. The old binary is first hard-linked as `.previous`, so that at
 * every instant the binary path holds a complete binary (old or new).
 */
export async function placeBinary(temp: DownloadedFile, binaryPath: string): Promise<string | undefined> {
  await chmod(temp.path, 0o755);
  let previousPath: string | undefined;
  if (await exists(binaryPath)) {
    previousPath = previousBinaryPath(binaryPath);
    await rm(previousPath, { force: true });
    await link(binaryPath, previousPath);
  }
  await rename(temp.path, binaryPath);
  await fsyncDir(dirname(binaryPath));
  return previousPath;
}

async function exists(path: string): Promise<boolean> {
  return (await lstatOrUndefined(path)) !== undefined;
}

async function lstatOrUndefined(path: string) {
  try {
    return await lstat(path);
  } catch {
    return undefined;
  }
}

async function onPath(command: string, dirs: string[]): Promise<boolean> {
  for (const dir of dirs) {
    try {
      await access(join(dir, command), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}
