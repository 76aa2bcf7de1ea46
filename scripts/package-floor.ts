// Reports the oldest glibc and libstdc++ each built binary can run on: the newest symbol versions that the
// runtime and its embedded SQLite addon import. `npm run package:floor` prints them; `--check` fails when a
// binary needs more than Raspberry Pi OS bullseye has (glibc 2.31, GLIBCXX_3.4.28).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { addonPath } from './build-addon.js';
import { ARCHES, DIST, TARGETS, binaryName, type Target } from './package-targets.js';

const LIMITS = { GLIBC: '2.31', GLIBCXX: '3.4.28' } as const;

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

function newest(...floors: Floor[]): Floor {
  const result: Floor = {};
  for (const floor of floors) {
    for (const kind of ['GLIBC', 'GLIBCXX'] as const) {
      const version = floor[kind];
      if (version && (!result[kind] || compareVersions(version, result[kind]) > 0)) result[kind] = version;
    }
  }
  return result;
}

const check = process.argv.includes('--check');
let tooNew = false;
for (const arch of ARCHES) {
  const target = TARGETS[arch];
  const binary = join(DIST, binaryName(arch));
  const addon = addonPath(target);
  if (!existsSync(binary) || !existsSync(addon)) continue;
  const runtime = importedFloor(target, binary);
  const sqlite = importedFloor(target, addon);
  const total = newest(runtime, sqlite);
  const over = (['GLIBC', 'GLIBCXX'] as const).filter((k) => total[k] && compareVersions(total[k], LIMITS[k]) > 0);
  if (over.length > 0) tooNew = true;
  const show = (f: Floor) => `glibc ${f.GLIBC ?? '-'}, GLIBCXX ${f.GLIBCXX ?? '-'}`;
  console.log(`${binaryName(arch)}: needs ${show(total)} (runtime ${show(runtime)}; sqlite addon ${show(sqlite)})${over.length ? `  ABOVE bullseye: ${over.join(', ')}` : ''}`);
}
if (check && tooNew) process.exit(1);
