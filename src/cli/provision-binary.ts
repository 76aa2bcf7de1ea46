import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, readSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { K3sArch } from '../k3s/release.js';
import { UsageError } from '../lib/errors.js';
import { entryExists } from '../lib/files.js';

/** The architectures fleetlet ships a binary for, named as its binaries are (fleetlet-linux-<arch>). */
export type ImageArch = 'x64' | 'arm64' | 'armv7';

const ARCH_ALIASES: Record<string, ImageArch> = {
  x64: 'x64', amd64: 'x64', x86_64: 'x64',
  arm64: 'arm64', aarch64: 'arm64',
  armv7: 'armv7', armv7l: 'armv7', armhf: 'armv7', arm: 'armv7',
};

interface ArchFacts {
  /** ELF e_machine and word size (EI_CLASS: 1 = 32-bit, 2 = 64-bit) of this arch's executables. */
  elfMachine: number;
  elfClass: 1 | 2;
  /** The dynamic loader glibc puts in every root filesystem of this arch: the image names its arch by having it. */
  loaders: string[];
  /** qemu-user programs that run it on another machine, and the Debian cross sysroot they can borrow libraries from. */
  emulators: string[];
  sysroot?: string;
  k3s: K3sArch;
  nodeArch: string;
}

export const ARCHES: Record<ImageArch, ArchFacts> = {
  x64: {
    elfMachine: 62, elfClass: 2, loaders: ['/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'],
    emulators: ['qemu-x86_64-static', 'qemu-x86_64'], k3s: 'amd64', nodeArch: 'x64',
  },
  arm64: {
    elfMachine: 183, elfClass: 2, loaders: ['/lib/ld-linux-aarch64.so.1', '/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1'],
    emulators: ['qemu-aarch64-static', 'qemu-aarch64'], sysroot: '/usr/aarch64-linux-gnu', k3s: 'arm64', nodeArch: 'arm64',
  },
  armv7: {
    elfMachine: 40, elfClass: 1, loaders: ['/lib/ld-linux-armhf.so.3', '/lib/arm-linux-gnueabihf/ld-linux-armhf.so.3'],
    emulators: ['qemu-arm-static', 'qemu-arm'], sysroot: '/usr/arm-linux-gnueabihf', k3s: 'arm', nodeArch: 'arm',
  },
};

/** A fleetlet version as `fleetlet --version` prints it: SemVer, no "v" (Node's own `v20.11.0` is not fleetlet). */
const VERSION_LINE = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const VERSION_TIMEOUT_MS = 120_000;

export function parseArch(value: string): ImageArch {
  const arch = ARCH_ALIASES[value.toLowerCase()];
  if (!arch) throw new UsageError(`--arch: unknown architecture "${value}"; expected x64, arm64 or armv7`);
  return arch;
}

/**
 * The image's architecture, from the loader it carries (an arm64 image has /lib/ld-linux-aarch64.so.1), or from
 * --arch. A stated arch that the image's own loader contradicts is refused: the image knows better than a flag.
 */
export function imageArch(root: string, stated: string | undefined): ImageArch {
  const found = (Object.keys(ARCHES) as ImageArch[]).filter((arch) => ARCHES[arch].loaders.some((path) => entryExists(join(root, path))));
  const arch = stated === undefined ? undefined : parseArch(stated);
  if (arch) {
    if (found.length > 0 && !found.includes(arch)) {
      throw new UsageError(`--arch ${stated}: the image at ${root} holds the loader of ${found.join(' and ')}, not of ${arch}`);
    }
    return arch;
  }
  if (found.length === 1) return found[0]!;
  if (found.length === 0) {
    throw new UsageError(`--arch: cannot tell the architecture of ${root} (it has no ${Object.values(ARCHES).map((facts) => facts.loaders[0]).join(', ')}); give --arch x64, arm64 or armv7`);
  }
  throw new UsageError(`--arch: ${root} holds the loaders of ${found.join(' and ')}; give --arch to say which one the device runs`);
}

export interface CheckedBinary {
  arch: ImageArch;
  /** What the binary printed for --version; undefined when it could not be run here (no emulator). */
  version?: string;
  /** Why it was not run, to be shown as a warning. */
  notRun?: string;
}

/**
 * A binary goes into an image only as an ELF executable of the image's arch that says its version when run: a
 * script, a JavaScript bundle or a binary for another board is refused, with the reason, before anything is written.
 */
export function checkBinary(file: string, arch: ImageArch, root: string): CheckedBinary {
  const problem = elfProblem(file, arch);
  if (problem) throw new UsageError(`--binary ${file}: ${problem}`);
  const command = versionCommand(file, arch, root);
  if (!command) {
    const facts = ARCHES[arch];
    return { arch, notRun: `${file} was not run: this machine is not ${arch} and has no ${facts.emulators.join(' or ')} (install qemu-user-static to check that it runs)` };
  }
  const result = spawnSync(command[0], command[1], {
    encoding: 'utf8',
    timeout: VERSION_TIMEOUT_MS,
    maxBuffer: 64 * 1024,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  const output = (result.stdout ?? '').trim();
  if (result.error || result.status !== 0) {
    const why = result.error ? result.error.message : `exit ${result.status ?? result.signal}`;
    throw new UsageError(`--binary ${file}: \`${file} --version\` failed (${why}): it does not run as fleetlet`);
  }
  if (!VERSION_LINE.test(output)) {
    throw new UsageError(`--binary ${file}: \`--version\` printed ${JSON.stringify(output.slice(0, 80))}, not a fleetlet version: this is not fleetlet`);
  }
  return { arch, version: output };
}

/** What is wrong with the file as an executable of `arch`, from its first bytes; undefined when nothing is. */
export function elfProblem(file: string, arch: ImageArch): string | undefined {
  if (!existsSync(file) || !statSync(file).isFile()) return 'no such file';
  const header = readHead(file, 64);
  if (header.subarray(0, 2).toString('latin1') === '#!') {
    const line = header.toString('latin1').split('\n')[0]!;
    if (/\bnode\b/.test(line)) return `a JavaScript bundle (${line}), not the fleetlet single binary: give dist/fleetlet-linux-<arch>`;
    return `a script (${line}), not the fleetlet executable`;
  }
  if (header.length < 20 || header.readUInt32BE(0) !== 0x7f454c46) {
    return 'not an ELF executable (a JavaScript bundle or another file?): give a fleetlet-linux-<arch> single binary';
  }
  const elfClass = header[4];
  const type = header.readUInt16LE(16);
  const machine = header.readUInt16LE(18);
  const actual = (Object.keys(ARCHES) as ImageArch[]).find((name) => ARCHES[name].elfMachine === machine && ARCHES[name].elfClass === elfClass);
  if (actual !== arch) return `an executable for ${actual ?? `ELF machine ${machine}`}, but the image is ${arch}`;
  if (type !== 2 && type !== 3) return 'an ELF file that is not an executable';
  return undefined;
}

/** How to run the binary here: directly on a machine of its arch, else under qemu-user with the image's libraries. */
function versionCommand(file: string, arch: ImageArch, root: string): [string, string[]] | undefined {
  const facts = ARCHES[arch];
  if (process.arch === facts.nodeArch) return [file, ['--version']];
  const emulator = facts.emulators.map(onPath).find((path) => path !== undefined);
  if (!emulator) return undefined;
  const libraries = librariesFor(arch, root);
  return [emulator, [...(libraries ? ['-L', libraries] : []), file, '--version']];
}

/** The image's own loader and libc when it has real ones; else the cross sysroot of this machine, if installed. */
function librariesFor(arch: ImageArch, root: string): string | undefined {
  const facts = ARCHES[arch];
  // lstat, not stat: an absolute symlink in the image points into the image, not into this machine.
  const loader = facts.loaders.map((path) => join(root, path)).find((path) => entryExists(path) && lstatSync(path).isFile());
  const head = loader ? readHead(loader, 4) : Buffer.alloc(0);
  if (head.length === 4 && head.readUInt32BE(0) === 0x7f454c46) return root;
  return facts.sysroot && existsSync(facts.sysroot) ? facts.sysroot : undefined;
}

function onPath(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, program))) return join(dir, program);
  }
  return undefined;
}

function readHead(file: string, bytes: number): Buffer {
  const buffer = Buffer.alloc(bytes);
  const fd = openSync(file, 'r');
  try {
    return buffer.subarray(0, readSync(fd, buffer, 0, bytes, 0));
  } finally {
    closeSync(fd);
  }
}
