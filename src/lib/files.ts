import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, lstatSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isErrno } from './errors.js';

/**
 * The one way fleetlet writes a file that must survive a power cut whole or not at all: a temp file beside the
 * target (same file system), written and fsynced, renamed over the target, and the directory fsynced so that the
 * rename itself reaches the disk. A reader sees the old content or the new, never a mix or an empty file.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: { mode: number }): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(4).toString('hex')}`);
  const handle = await open(temp, 'w', options.mode);
  try {
    await handle.writeFile(data);
    // open() applies the umask; the mode must be exactly what was asked (secret files are 0600, scripts 0700).
    await handle.chmod(options.mode);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path));
}

/** Renames and makes the rename durable (fsync of the directory that holds the new name). */
export async function renameDurable(from: string, to: string): Promise<void> {
  await rename(from, to);
  await fsyncDir(dirname(to));
  if (dirname(from) !== dirname(to)) await fsyncDir(dirname(from));
}

export async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a rename or an unlink durable: the directory entry itself must reach the disk. */
export async function fsyncDir(dir: string): Promise<void> {
  await fsyncFile(dir);
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** The sha256 of a file, or undefined when there is no file at `path`. */
export async function sha256OfFileIfPresent(path: string): Promise<string | undefined> {
  try {
    return await sha256OfFile(path);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** Like existsSync, but true for a symlink whose target is missing (an enable link in an image points at /etc). */
export function entryExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
