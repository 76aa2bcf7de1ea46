// Reports the oldest glibc and libstdc++ each built binary can run on: the newest symbol versions that the
// runtime and its embedded SQLite addon import. `npm run package:floor` prints them; `--check` fails when a
// binary needs more than Raspberry Pi OS bullseye has (glibc 2.31, GLIBCXX_3.4.28).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { addonPath } from './build-addon.js';
import { BULLSEYE, compareVersions, importedFloor, newest, type Floor } from './package-elf.js';
import { ARCHES, DIST, TARGETS, binaryName } from './package-targets.js';

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
  const over = (['GLIBC', 'GLIBCXX'] as const).filter((k) => total[k] && compareVersions(total[k], BULLSEYE[k]) > 0);
  if (over.length > 0) tooNew = true;
  const show = (f: Floor) => `glibc ${f.GLIBC ?? '-'}, GLIBCXX ${f.GLIBCXX ?? '-'}`;
  console.log(`${binaryName(arch)}: needs ${show(total)} (runtime ${show(runtime)}; sqlite addon ${show(sqlite)})${over.length ? `  ABOVE bullseye: ${over.join(', ')}` : ''}`);
}
if (check && tooNew) process.exit(1);
