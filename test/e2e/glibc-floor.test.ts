import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addonPath } from '../../scripts/build-addon.js';
import { BULLSEYE, compareVersions, importedFloor } from '../../scripts/package-elf.js';
import { TARGETS } from '../../scripts/package-targets.js';
import { tempDir } from '../helpers/paths.js';
import { REQUIRE_BINARIES, builtBinaries } from './binaries.js';

const notAbove = (version: string | undefined, limit: string) => version === undefined || compareVersions(version, limit) <= 0;

describe('glibc floor of the single binaries', () => {
  it('compares versions numerically', () => {
    expect(compareVersions('2.3', '2.28')).toBeLessThan(0);
    expect(compareVersions('3.4.9', '3.4.28')).toBeLessThan(0);
    expect(compareVersions('2.31', '2.31.0')).toBe(0);
  });

  it('sees a symbol from a newer glibc in a library built here (the check can fail)', () => {
    if (spawnSync('gcc', ['--version']).error) return;
    const { dir, cleanup } = tempDir('fleetlet-floor-');
    try {
      writeFileSync(join(dir, 'new.c'), '#include <stdlib.h>\nunsigned int draw(void) { return arc4random(); }\n');
      const built = spawnSync('gcc', ['-shared', '-fPIC', '-o', join(dir, 'new.so'), join(dir, 'new.c')], { encoding: 'utf8' });
      expect(built.status, built.stderr).toBe(0);
      expect(importedFloor(TARGETS.x64, join(dir, 'new.so')).GLIBC).toBe('2.36');
    } finally {
      cleanup();
    }
  });

  for (const binary of builtBinaries()) {
    it.skipIf(!binary.present && !REQUIRE_BINARIES)(`${binary.arch}: runtime and SQLite addon need no more than bullseye has`, () => {
      const target = TARGETS[binary.arch];
      const addon = addonPath(target);
      expect(existsSync(addon), `${addon} (built by npm run package)`).toBe(true);
      for (const file of [binary.path, addon]) {
        const floor = importedFloor(target, file);
        expect(floor.GLIBC, file).toBeDefined();
        expect(notAbove(floor.GLIBC, BULLSEYE.GLIBC), `${file} needs glibc ${floor.GLIBC}`).toBe(true);
        expect(notAbove(floor.GLIBCXX, BULLSEYE.GLIBCXX), `${file} needs GLIBCXX ${floor.GLIBCXX}`).toBe(true);
      }
    });
  }
});
