import { readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { join, sep } from 'node:path';

/** This boot's id: pids and start ticks begin again at every boot, the boot id never repeats. */
export function currentBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether process `pid` runs the k3s binary at `binaryPath`. The real binary is a wrapper that re-execs, keeping its
 * pid, into its extracted copy <dataDir>/data/<hash>/bin/k3s-agent (k3s-facts §3), so /proc/<pid>/exe points
 * under the data dir, at whichever hash that release unpacked to, rather than at binaryPath. A binary replaced
 * since the start (an upgrade renames a new file over it) shows as "<path> (deleted)". A script binary (`#!`) runs
 * under its interpreter: the interpreter is the exe and the script's path is argv[1].
 */
export function runsK3sBinary(pid: number, binaryPath: string, dataDir: string | undefined): boolean {
  let exe: string;
  try {
    exe = readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
  } catch {
    return false;
  }
  const binaries = new Set([binaryPath, realOrSelf(binaryPath)]);
  if (binaries.has(exe)) return true;
  if (dataDir && exe.startsWith(join(realOrSelf(dataDir), 'data') + sep)) return true;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').slice(0, 8192).split('\0');
    return binaries.has(argv[1] ?? '');
  } catch {
    return false;
  }
}

function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
