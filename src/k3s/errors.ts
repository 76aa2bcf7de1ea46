import { DownloadChecksumError, DownloadFailedError, DownloadFailure } from '../lib/download.js';
import { FleetletError } from '../lib/errors.js';

/** The machine's architecture has no k3s release (install.sh: "Unsupported architecture"). */
export class UnsupportedArchError extends FleetletError {
  readonly severity = 'fatal';
}

/** A server answered, but not with what a release mirror serves (404, bad redirect, malformed checksum file). */
export class ReleaseNotFoundError extends FleetletError {
  readonly severity = 'fatal';
}

/** The network or the mirror failed; the next attempt may succeed. */
export class DownloadError extends FleetletError {
  readonly severity = 'transient';
}

/** The downloaded bytes are not the release: never installed. */
export class ChecksumMismatchError extends FleetletError {
  readonly severity = 'fatal';
  constructor(
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`download of ${file} does not match its sha256 (expected ${expected}, got ${actual}); nothing was installed`);
  }
}

/** Not enough free space for the download next to the binary; freeing space fixes it. */
export class InsufficientDiskError extends FleetletError {
  readonly severity = 'transient';
  constructor(
    readonly dir: string,
    readonly neededBytes: number,
    readonly freeBytes: number,
  ) {
    super(
      `not enough free space in ${dir}: need ${formatMiB(neededBytes)}, have ${formatMiB(freeBytes)}; nothing was installed`,
    );
  }
}

/** An air-gap folder or bundle lacks a file it needs. */
export class AirgapBundleError extends FleetletError {
  readonly severity = 'fatal';
}

/** extra-args asked for a flag that `k3s agent` does not know, or that fleetlet manages itself. */
export class AgentArgsError extends FleetletError {
  readonly severity = 'fatal';
}

/** No k3s binary where the config says it is. */
export class BinaryNotInstalledError extends FleetletError {
  readonly severity = 'transient';
}

function formatMiB(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * The k3s words for what the download helper reports: a checksum mismatch stays ChecksumMismatchError, a 404 means
 * the release is not there, and any other download problem is a DownloadError that keeps the original as its cause.
 * Anything else (a disk-space check) passes through.
 */
export function k3sDownloadError(err: unknown, url: string): unknown {
  if (err instanceof DownloadChecksumError) return new ChecksumMismatchError(err.what, err.expected, err.actual);
  if (err instanceof DownloadFailedError && err.status === 404) {
    return new ReleaseNotFoundError(`${url} does not exist (HTTP 404): is the version or the artifact URL wrong?`);
  }
  if (err instanceof DownloadFailure) return new DownloadError(`${err.message}; nothing was installed`, { cause: err });
  return err;
}
