import { chmod, link, rm, stat } from 'node:fs/promises';
import { renameDurable, sha256OfFileIfPresent } from '../lib/files.js';

/**
 * File moves for replacing an executable so that at every instant its path holds a complete binary (old or new)
 * and the old one survives as `<binary>.previous`. Each step is idempotent: a state machine that is killed
 * mid-step runs it again. Renames are made durable with an fsync of the directory.
 */

export function previousPathOf(binaryPath: string): string {
  return `${binaryPath}.previous`;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Makes `to` a durable copy of `from` by hard link + rename, so `to` is never half-written. */
async function linkOver(from: string, to: string): Promise<void> {
  const temp = `${to}.tmp-${process.pid}`;
  await rm(temp, { force: true });
  await link(from, temp);
  await renameDurable(temp, to);
}

/**
 * Keeps the installed binary as `.previous`, unless `.previous` already holds the binary with `installedSha`
 * (a resumed run). Refuses to overwrite a good `.previous` with anything but the binary it was asked to keep.
 */
export async function keepPrevious(binaryPath: string, installedSha: string): Promise<void> {
  const previous = previousPathOf(binaryPath);
  if ((await sha256OfFileIfPresent(previous)) === installedSha) return;
  if ((await sha256OfFileIfPresent(binaryPath)) !== installedSha) {
    throw new Error(`${binaryPath} is no longer the binary to keep (sha256 changed); refusing to overwrite ${previous}`);
  }
  await linkOver(binaryPath, previous);
}

/** Renames the verified new binary over the installed one; a no-op when that already happened. */
export async function swapIn(newPath: string, binaryPath: string, newSha: string): Promise<void> {
  if ((await sha256OfFileIfPresent(binaryPath)) === newSha) {
    await rm(newPath, { force: true });
    return;
  }
  // Downloads are written 0600; the binary must be executable before it takes the name.
  await chmod(newPath, 0o755);
  await renameDurable(newPath, binaryPath);
}

/** Puts `.previous` back at the binary path (it stays as `.previous` too). */
export async function restorePrevious(binaryPath: string, previousSha: string): Promise<void> {
  if ((await sha256OfFileIfPresent(binaryPath)) === previousSha) return;
  const previous = previousPathOf(binaryPath);
  if ((await sha256OfFileIfPresent(previous)) !== previousSha) throw new Error(`${previous} is missing or changed; cannot roll back`);
  await linkOver(previous, binaryPath);
}
