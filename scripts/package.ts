// `npm run package`: builds dist/fleetlet-linux-{x64,arm64,armv7}, an .xz of each (what is published), a .gz of each
// (for devices without xz: install.sh --gz-sha256) and SHA256SUMS.
// PACKAGE_ARCHES=x64,arm64 limits the targets. Needs the Debian cross compilers and qemu-user-static
// (.ci/run installs them); runtimes and addons are cached under dist/cache between runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ensureAddon } from './build-addon.js';
import { buildSea } from './build-sea.js';
import { ensureRuntime } from './package-runtimes.js';
import { ARCHES, DIST, TARGETS, binaryName, commandFor, selectArches, type Target } from './package-targets.js';

const version = (JSON.parse(readFileSync(join(DIST, '../package.json'), 'utf8')) as { version: string }).version;

async function packageTarget(target: Target): Promise<void> {
  const timer = stopwatch();
  const runtime = ensureRuntime(target);
  const addon = ensureAddon(target, runtime);
  const addonSeconds = timer.lap();
  const generator =
    target.blobGenerator === 'x64' ? { target: TARGETS.x64, node: ensureRuntime(TARGETS.x64).node } : { target, node: runtime.node };
  const binary = await buildSea({ target, runtime, generator, addon });
  const run = spawnSync(...commandFor(target, binary, ['--version']), { encoding: 'utf8' });
  const reported = run.stdout.trim();
  if (reported !== version) throw new Error(`${binary} --version printed "${reported}", expected ${version}: ${run.stderr}`);
  // The code cache is taken only when the runtime's V8 flags match the blob writer's; otherwise every start is slower.
  if (/code cache data rejected/i.test(run.stderr)) throw new Error(`${binary}: V8 rejected the code cache: ${run.stderr}`);
  const seaSeconds = timer.lap();
  compressXz(binary);
  const xzSeconds = timer.lap();
  compress(binary, 'gz', ['gzip', '-n', '-6']);
  console.log(
    `${basename(binary)}: addon ${addonSeconds}s, binary ${seaSeconds}s, xz ${xzSeconds}s, gz ${timer.lap()}s (runtime ${target.runtime.version})`,
  );
}

/**
 * xz -6 in multi-threaded mode with a fixed block size: its bytes depend on the block size, not on the thread count,
 * so a release still rebuilds byte for byte. About a third smaller than gzip -9, within 1 MB of xz -9 single-threaded,
 * which took minutes per binary (docs/benchmarks.md). xz-utils is installed on Raspberry Pi OS, Debian and Ubuntu.
 */
function compressXz(binary: string): void {
  compress(binary, 'xz', ['xz', '-6', '--threads=2', '--block-size=24MiB']);
}

/** `gzip -n` leaves the name and time out of the header: the same binary gives the same bytes. */
function compress(binary: string, extension: string, [program, ...args]: string[]): void {
  const out = openSync(`${binary}.${extension}`, 'w');
  try {
    execFileSync(program!, [...args, '--stdout', binary], { stdio: ['ignore', out, 'inherit'] });
  } finally {
    closeSync(out);
  }
}

function writeChecksums(): void {
  const lines: string[] = [];
  for (const arch of ARCHES) {
    for (const file of [binaryName(arch), `${binaryName(arch)}.xz`, `${binaryName(arch)}.gz`]) {
      const path = join(DIST, file);
      if (existsSync(path)) lines.push(`${createHash('sha256').update(readFileSync(path)).digest('hex')}  ${file}`);
    }
  }
  writeFileSync(join(DIST, 'SHA256SUMS'), `${lines.join('\n')}\n`);
}

function stopwatch() {
  let last = Date.now();
  return {
    lap: () => {
      const now = Date.now();
      const seconds = ((now - last) / 1000).toFixed(1);
      last = now;
      return seconds;
    },
  };
}

const started = Date.now();
for (const arch of selectArches(process.env.PACKAGE_ARCHES)) await packageTarget(TARGETS[arch]);
writeChecksums();
console.log(`package: done in ${((Date.now() - started) / 1000).toFixed(0)}s`);
