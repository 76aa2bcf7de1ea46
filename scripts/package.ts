// `npm run package`: builds dist/fleetlet-linux-{x64,arm64,armv7}, a .gz of each and SHA256SUMS.
// PACKAGE_ARCHES=x64,arm64 limits the targets. Needs the Debian cross compilers and qemu-user-static
// (.ci/run installs them); runtimes and addons are cached under dist/cache between runs.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
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
  const reported = execFileSync(...commandFor(target, binary, ['--version']), { encoding: 'utf8' }).trim();
  if (reported !== version) throw new Error(`${binary} --version printed "${reported}", expected ${version}`);
  const seaSeconds = timer.lap();
  await pipeline(createReadStream(binary), createGzip({ level: 9 }), createWriteStream(`${binary}.gz`));
  console.log(
    `${basename(binary)}: addon ${addonSeconds}s, binary ${seaSeconds}s, gzip ${timer.lap()}s (runtime ${target.runtime.version})`,
  );
}

function writeChecksums(): void {
  const lines: string[] = [];
  for (const arch of ARCHES) {
    for (const file of [binaryName(arch), `${binaryName(arch)}.gz`]) {
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
