import { isErrno } from '../../src/lib/errors.js';
import { readdirSync, readFileSync } from 'node:fs';

/** Pids of every live process whose parent chain leads to `ancestor` (for no-orphan checks). */
export function descendantsOf(ancestor: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name may contain spaces and parentheses: fields start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
    } catch {
      // the process ended while we looked
    }
  }
  const result: number[] = [];
  for (const pid of parents.keys()) {
    let current = parents.get(pid);
    while (current !== undefined && current > 1) {
      if (current === ancestor) {
        result.push(pid);
        break;
      }
      current = parents.get(current);
    }
  }
  return result;
}

/** Pids of live processes whose command line contains `needle`. */
export function processesMatching(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const state = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (cmdline.includes(needle) && !/\) Z /.test(state)) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

/**
 * Like processesMatching, counting a process tree once: k3s started with --log is a `k3s init` parent running the
 * agent as its child, and both carry the same command line.
 */
export function outermostProcessesMatching(needle: string): number[] {
  const found = processesMatching(needle);
  return found.filter((pid) => !found.includes(parentOf(pid)));
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** Signals a process that may have exited since it was listed (a child ends with its parent): gone is not an error. */
export function signalIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if (!isErrno(err, 'ESRCH')) throw err;
  }
}
