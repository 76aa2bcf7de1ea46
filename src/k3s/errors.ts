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
