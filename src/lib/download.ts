import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readdirSync, rmSync } from 'node:fs';
import { open, rm, statfs } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errorMessage, FleetletError } from './errors.js';

/**
 * The one bounded, verified download: a URL (or, for air-gap installs, a local file) streamed into a temp file
 * beside its target (same file system, so the caller's swap is a rename), hashed as it goes, bounded in bytes, in
 * silence (no byte for `idleTimeoutMs`) and in time (`deadline`), abortable, fsynced, and removed on any failure.
 * A mirror that stalls can hold a caller for at most the idle timeout, never for ever.
 */

/** Why a download gave up; each subclass says whether another attempt may succeed. */
export abstract class DownloadFailure extends FleetletError {}

/** The network or the server failed (connection refused, HTTP error, body cut off): the next attempt may succeed. */
export class DownloadFailedError extends DownloadFailure {
  readonly severity = 'transient';
  constructor(
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** No byte arrived for the idle timeout: a stalled mirror or a dead link. */
export class DownloadStalledError extends DownloadFailure {
  readonly severity = 'transient';
}

/** The overall deadline (a command's expiry) passed: retrying this command cannot help. */
export class DownloadDeadlineError extends DownloadFailure {
  readonly severity = 'fatal';
}

/** The caller aborted (shutdown or cancel). */
export class DownloadAbortedError extends DownloadFailure {
  readonly severity = 'transient';
}

/** More bytes than the bound allows: not the artifact that was asked for. */
export class DownloadTooLargeError extends DownloadFailure {
  readonly severity = 'fatal';
}

/** The bytes are not the ones whose sha256 was given: never kept. */
export class DownloadChecksumError extends DownloadFailure {
  readonly severity = 'fatal';
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${what}: sha256 ${actual} does not match the expected ${expected}`);
  }
}

export interface HttpGetter {
  (url: string, init: { signal: AbortSignal; redirect: 'follow' }): Promise<Response>;
}

export interface DownloadOptions {
  maxBytes: number;
  /** Longest silence (no byte, also while waiting for the headers) before the download is given up. */
  idleTimeoutMs: number;
  /** Epoch ms after which the download is given up, whatever its progress. */
  deadline?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Checked at the end; without it the caller verifies the returned sha256 itself. */
  expectedSha256?: string | undefined;
  onProgress?: ((receivedBytes: number, totalBytes: number | undefined) => void) | undefined;
  /** Runs once the headers are in, before a byte is written (a free-space check); a throw ends the download. */
  beforeBody?: ((totalBytes: number | undefined) => Promise<void>) | undefined;
  get?: HttpGetter | undefined;
}

export interface DownloadedFile {
  /** The temp file beside the target, mode 0600, fsynced; the caller renames it or removes it. */
  path: string;
  sha256: string;
  bytes: number;
}

const TEMP_MARK = '.download-';
/** The temp name an older fleetlet used for k3s downloads; still swept. */
const LEGACY_TEMP_MARK = '.partial-';

export function downloadTempPath(target: string): string {
  return join(dirname(target), `.${basename(target)}${TEMP_MARK}${randomBytes(4).toString('hex')}`);
}

/**
 * Removes the temp files that downloads for `target` left behind when the process died mid-way (they are never
 * renamed, so nothing else would ever delete them). Synchronous: it runs while the agent is built, before any
 * command could start a new download beside the same target. Returns the names removed.
 */
export function removeDownloadLeftovers(target: string): string[] {
  const dir = dirname(target);
  const prefixes = [TEMP_MARK, LEGACY_TEMP_MARK].map((mark) => `.${basename(target)}${mark}`);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const leftovers = names.filter((name) => prefixes.some((prefix) => name.startsWith(prefix)));
  for (const name of leftovers) rmSync(join(dir, name), { force: true });
  return leftovers;
}

/** Downloads `url` into a temp file beside `target`, within every bound of `options`. */
export async function downloadToTemp(url: string, target: string, options: DownloadOptions): Promise<DownloadedFile> {
  const now = Date.now();
  if (options.deadline !== undefined && options.deadline <= now) {
    throw new DownloadDeadlineError(`${url}: the deadline ${new Date(options.deadline).toISOString()} has passed; nothing was downloaded`);
  }
  if (options.signal?.aborted) throw new DownloadAbortedError(`${url}: aborted before it started`);
  const cut = new Cutoff(options, now);
  try {
    let response: Response;
    try {
      response = await (options.get ?? fetch)(url, { signal: cut.signal, redirect: 'follow' });
    } catch (err) {
      throw cut.explain(url) ?? new DownloadFailedError(`cannot download ${url}: ${errorMessage(err, { withCause: true })}`, undefined, { cause: err });
    }
    if (!response.ok || !response.body) {
      await response.body?.cancel().catch(() => {});
      throw new DownloadFailedError(`downloading ${url} failed: HTTP ${response.status}`, response.status);
    }
    const declared = Number(response.headers.get('content-length') ?? NaN);
    const totalBytes = Number.isFinite(declared) ? declared : undefined;
    try {
      if (totalBytes !== undefined && totalBytes > options.maxBytes) {
        throw new DownloadTooLargeError(`${url} is ${totalBytes} bytes, over the limit of ${options.maxBytes}`);
      }
      await options.beforeBody?.(totalBytes);
    } catch (err) {
      await response.body.cancel().catch(() => {});
      throw err;
    }
    try {
      return await streamIntoTemp(response.body as unknown as AsyncIterable<Uint8Array>, target, {
        ...options,
        what: url,
        totalBytes,
        onChunk: () => cut.heard(),
      });
    } catch (err) {
      throw cut.explain(url) ?? (err instanceof DownloadFailure ? err : new DownloadFailedError(`${url}: ${errorMessage(err, { withCause: true })}`, undefined, { cause: err }));
    }
  } finally {
    cut.dispose();
  }
}

/** Copies a local file (an air-gap folder) into a temp file beside `target`, verified and bounded like a download. */
export async function copyToTemp(
  source: string,
  target: string,
  options: { maxBytes: number; expectedSha256: string; totalBytes?: number },
): Promise<DownloadedFile> {
  return streamIntoTemp(createReadStream(source), target, { ...options, what: source });
}

interface StreamOptions {
  what: string;
  maxBytes: number;
  totalBytes?: number | undefined;
  expectedSha256?: string | undefined;
  onProgress?: ((receivedBytes: number, totalBytes: number | undefined) => void) | undefined;
  onChunk?: () => void;
}

async function streamIntoTemp(chunks: AsyncIterable<Uint8Array>, target: string, options: StreamOptions): Promise<DownloadedFile> {
  const path = downloadTempPath(target);
  const hash = createHash('sha256');
  let bytes = 0;
  const file = await open(path, 'wx', 0o600);
  try {
    for await (const chunk of chunks) {
      options.onChunk?.();
      bytes += chunk.byteLength;
      if (bytes > options.maxBytes) throw new DownloadTooLargeError(`${options.what} is larger than ${options.maxBytes} bytes`);
      hash.update(chunk);
      await file.write(chunk);
      options.onProgress?.(bytes, options.totalBytes);
    }
    if (options.totalBytes !== undefined && bytes !== options.totalBytes) {
      throw new DownloadFailedError(`${options.what} was cut short: got ${bytes} of ${options.totalBytes} bytes`);
    }
    const sha256 = hash.digest('hex');
    if (options.expectedSha256 !== undefined && sha256 !== options.expectedSha256) {
      throw new DownloadChecksumError(options.what, options.expectedSha256, sha256);
    }
    await file.sync();
    await file.close();
    return { path, sha256, bytes };
  } catch (err) {
    await file.close().catch(() => {});
    await rm(path, { force: true });
    throw err;
  }
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** One AbortSignal for fetch and its body, fired by the caller's signal, the deadline or the idle timer. */
class Cutoff {
  private readonly controller = new AbortController();
  private why: 'idle' | 'deadline' | 'aborted' | undefined;
  private readonly idleTimer: NodeJS.Timeout;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly onAbort = () => this.fire('aborted');

  constructor(
    private readonly options: DownloadOptions,
    now: number,
  ) {
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    this.idleTimer = setTimeout(() => this.fire('idle'), options.idleTimeoutMs);
    if (options.deadline !== undefined) this.armDeadline(options.deadline - now);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** A byte arrived: the silence starts again. */
  heard(): void {
    this.idleTimer.refresh();
  }

  /** The error that says why the download was cut, or undefined when it was not cut. */
  explain(what: string): DownloadFailure | undefined {
    switch (this.why) {
      case 'idle':
        return new DownloadStalledError(`${what}: no data for ${this.options.idleTimeoutMs / 1000} s; gave up`);
      case 'deadline':
        return new DownloadDeadlineError(`${what}: not complete by ${new Date(this.options.deadline!).toISOString()}; gave up`);
      case 'aborted':
        return new DownloadAbortedError(`${what}: aborted`);
      default:
        return undefined;
    }
  }

  dispose(): void {
    clearTimeout(this.idleTimer);
    clearTimeout(this.deadlineTimer);
    this.options.signal?.removeEventListener('abort', this.onAbort);
  }

  /** Timers hold at most 2^31-1 ms (~24.8 days) and commands may live 30 days: a longer wait is re-armed. */
  private armDeadline(delayMs: number): void {
    const step = Math.min(Math.max(delayMs, 0), MAX_TIMER_MS);
    this.deadlineTimer = setTimeout(() => {
      const left = this.options.deadline! - Date.now();
      if (left > 0) this.armDeadline(left);
      else this.fire('deadline');
    }, step);
  }

  private fire(why: 'idle' | 'deadline' | 'aborted'): void {
    if (this.why) return;
    this.why = why;
    this.controller.abort();
  }
}

/** Free bytes for an unprivileged writer on the file system that holds `dir`. */
export async function freeBytesIn(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}
