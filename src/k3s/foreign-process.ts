import { readdirSync, readFileSync } from 'node:fs';

/**
 * k3s agents or servers running from `binaryPath` that fleetlet did not start, e.g. install.sh's k3s-agent
 * service. k3s shows itself as "<binary> agent" (it rewrites its process title); a script run through an
 * interpreter shows the interpreter first, so the second word is checked too. Two agents on one node fight over
 * 6444, 10248 and 10250.
 */
export function otherK3sProcesses(binaryPath: string, ownPid: number = process.pid): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === ownPid) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').slice(0, 8192).split('\0');
      const at = args.slice(0, 2).indexOf(binaryPath);
      const isAgent = at !== -1 && ['agent', 'server'].includes(args[at + 1] ?? '');
      if (isAgent && !/\) Z /.test(readFileSync(`/proc/${entry}/stat`, 'utf8'))) found.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

/** Reports each distinct set of other k3s processes once, not at every start attempt. */
export class OtherAgentsWatch {
  #reported = '';

  constructor(private readonly binaryPath: string) {}

  newlySeen(): number[] | undefined {
    const others = otherK3sProcesses(this.binaryPath);
    const key = others.join(',');
    if (others.length === 0 || key === this.#reported) return undefined;
    this.#reported = key;
    return others;
  }
}
