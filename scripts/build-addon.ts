// Builds better-sqlite3's native addon for one target, against that target's own Node headers, in a build
// directory of its own (node_modules/better-sqlite3 keeps the host build that the tests use).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CACHE, REPO_ROOT, type Target } from './package-targets.js';
import type { Runtime } from './package-runtimes.js';

const ADDON_SOURCE = join(REPO_ROOT, 'node_modules/better-sqlite3');

export function addonVersion(): string {
  return (JSON.parse(readFileSync(join(ADDON_SOURCE, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Returns the path of the stripped better_sqlite3.node for the target, building it when it is not cached. */
export function ensureAddon(target: Target, runtime: Runtime): string {
  const output = addonPath(target);
  if (existsSync(output)) return output;

  const buildDir = join(CACHE, 'addon-build', target.arch);
  rmSync(buildDir, { recursive: true, force: true });
  mkdirSync(buildDir, { recursive: true });
  for (const part of ['package.json', 'binding.gyp', 'src', 'deps']) cpSync(join(ADDON_SOURCE, part), join(buildDir, part), { recursive: true });

  const prefix = target.crossPrefix ?? '';
  const flags = compilerFlags(buildDir);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // npm passes its own `nodedir` setting down as this variable, and node-gyp lets it win over --nodedir.
    npm_config_nodedir: runtime.dir,
    CC: `${prefix}gcc`,
    CXX: `${prefix}g++`,
    LINK: `${prefix}g++`,
    AR: `${prefix}ar`,
    CFLAGS: flags.compile,
    CXXFLAGS: flags.compile,
    LDFLAGS: flags.link,
  };
  execFileSync(
    process.execPath,
    [nodeGyp(), 'rebuild', '--release', `--arch=${target.gypArch}`, `--nodedir=${runtime.dir}`, '--jobs=max'],
    { cwd: buildDir, env, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const built = join(buildDir, 'build/Release/better_sqlite3.node');
  const machine = elfMachine(built);
  if (machine !== target.elfMachine) throw new Error(`${built}: ELF machine ${machine}, expected ${target.elfMachine}`);

  mkdirSync(dirname(output), { recursive: true });
  execFileSync(`${prefix}strip`, ['--strip-unneeded', built]);
  renameSync(built, output);
  rmSync(buildDir, { recursive: true, force: true });
  return output;
}

const COMPAT_HEADER = join(REPO_ROOT, 'scripts/build-addon-compat.h');

function compilerFlags(buildDir: string) {
  return {
    // Build paths must not end up in the binary: the same checkout builds the same bytes wherever it lives.
    // The compat header keeps the glibc floor low (see the header).
    compile: `-ffile-prefix-map=${buildDir}=. -include ${COMPAT_HEADER}`,
    // libstdc++ stays dynamic, like Node's own: a static one drags in symbols of Debian's newer glibc.
    link: '',
  };
}

/** The cached addon of a target; its name changes with everything that changes its bytes. */
export function addonPath(target: Target): string {
  const recipe = createHash('sha256')
    .update(readFileSync(COMPAT_HEADER))
    .update(JSON.stringify(compilerFlags('')))
    .digest('hex')
    .slice(0, 12);
  const name = `better_sqlite3-${addonVersion()}-node-${target.runtime.version}-${target.arch}-${recipe}.node`;
  return join(CACHE, 'addons', name);
}

/** npm ships node-gyp and names it to the scripts it runs; outside npm, ask npm where it lives. */
function nodeGyp(): string {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm;
  const prefix = execFileSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).trim();
  const bundled = join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  if (!existsSync(bundled)) throw new Error('node-gyp not found: run through `npm run package`');
  return bundled;
}

/** e_machine from the ELF header (offset 18, little-endian on every target here). */
export function elfMachine(file: string): number {
  const header = Buffer.alloc(20);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, header, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  if (header.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  return header.readUInt16LE(18);
}
