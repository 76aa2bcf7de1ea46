import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ARCHES, DIST, TARGETS, binaryName, commandFor, type Arch } from '../../scripts/package-targets.js';

/**
 * The single binaries `npm run package` built. Locally a missing one skips its tests; CI sets
 * E2E_REQUIRE_BINARIES=1 after building them, so there a missing binary fails.
 */
export const REQUIRE_BINARIES = process.env.E2E_REQUIRE_BINARIES === '1';

export interface BuiltBinary {
  arch: Arch;
  path: string;
  present: boolean;
  /** The command line that runs the binary here (under qemu-user-static for arm). */
  command(args: string[]): [string, string[]];
}

export function builtBinaries(): BuiltBinary[] {
  return ARCHES.map((arch) => {
    const path = join(DIST, binaryName(arch));
    return { arch, path, present: existsSync(path), command: (args) => commandFor(TARGETS[arch], path, args) };
  });
}
