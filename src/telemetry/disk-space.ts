import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { isErrno } from '../lib/errors.js';

export interface DiskSpace {
  totalBytes: number;
  freeBytes: number;
}

export type DiskSpaceReader = (path: string) => DiskSpace | undefined;

/**
 * Space of the filesystem holding `path`, by the statfs system call (no `df` child). A directory that does not
 * exist yet (k3s's data dir before the first install) is measured at its nearest existing parent, where it will
 * be created. "Free" is what an unprivileged writer may use (f_bavail), as df reports it.
 */
export function statfsDiskSpace(path: string): DiskSpace | undefined {
  let current = path;
  for (let depth = 0; depth < 64; depth += 1) {
    try {
      const stats = statfsSync(current);
      return { totalBytes: stats.blocks * stats.bsize, freeBytes: stats.bavail * stats.bsize };
    } catch (err) {
      const parent = dirname(current);
      if (!isErrno(err, 'ENOENT') || parent === current) return undefined;
      current = parent;
    }
  }
  return undefined;
}
