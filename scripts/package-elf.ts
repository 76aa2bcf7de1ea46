// Reads which glibc and libstdc++ symbol versions an ELF file imports: the oldest C libraries it can run on.
import { execFileSync } from 'node:child_process';
import type { Target } from './package-targets.js';

/** Raspberry Pi OS bullseye, the oldest system fleetlet is meant to run on. */
export const BULLSEYE = { GLIBC: '2.31', GLIBCXX: '3.4.28' } as const;

export interface Floor {
  GLIBC?: string;
  GLIBCXX?: string;
}

/** Newest GLIBC_x.y and GLIBCXX_x.y.z that an ELF file imports. */
export function importedFloor(target: Target, file: string): Floor {
  const dump = execFileSync(`${target.crossPrefix ?? ''}objdump`, ['-T', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const floor: Floor = {};
  for (const line of dump.split('\n')) {
    if (!line.includes('*UND*')) continue;
    const match = /\((GLIBC|GLIBCXX)_([0-9.]+)\)/.exec(line);
    if (!match) continue;
    const kind = match[1] as keyof Floor;
    if (!floor[kind] || compareVersions(match[2]!, floor[kind]) > 0) floor[kind] = match[2]!;
  }
  return floor;
}

export function compareVersions(a: string, b: string): number {
  const [pa, pb] = [a.split('.').map(Number), b.split('.').map(Number)];
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

export function newest(...floors: Floor[]): Floor {
  const result: Floor = {};
  for (const floor of floors) {
    for (const kind of ['GLIBC', 'GLIBCXX'] as const) {
      const version = floor[kind];
      if (version && (!result[kind] || compareVersions(version, result[kind]) > 0)) result[kind] = version;
    }
  }
  return result;
}
