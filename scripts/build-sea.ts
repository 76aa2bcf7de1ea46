// Makes one single executable: the agent bundled into one CommonJS file with the target's SQLite addon inside,
// turned into a SEA blob by a runtime of the same version and word size, and injected into the target's runtime.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { embedDashboard } from './embed-dashboard.js';
import { quietDebug } from './quiet-debug.js';
import { CACHE, DIST, REPO_ROOT, binaryName, commandFor, type Target } from './package-targets.js';
import type { Runtime } from './package-runtimes.js';

// Fixed by Node for every SEA: the marker postject flips so the runtime looks for the blob.
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

export interface SeaInputs {
  target: Target;
  runtime: Runtime;
  /** The runtime that writes the blob (the x64 one, or the target's own), and the target that runs it. */
  generator: { target: Target; node: string };
  addon: string;
}

export async function buildSea({ target, runtime, generator, addon }: SeaInputs): Promise<string> {
  const work = join(CACHE, 'sea', target.arch);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });

  const bundle = join(work, 'fleetlet.cjs');
  const addonAsAsset = takesAssets(target.runtime.version);
  await bundleWithAddon(bundle, addon, addonAsAsset);

  const blob = join(work, 'sea-prep.blob');
  const { v8Flags: _, ...baseConfig } = readSeaConfig();
  const seaConfig = join(work, 'sea-config.json');
  // The blob's writer runs with the same flags, or V8 rejects the code cache.
  const execArgv = blobExecArgv(target.runtime.version);
  // V8's code cache cuts startup by about 40% (docs/benchmarks.md), but it is only sound when the blob's writer
  // is the target's own runtime: the arm64 blob is written by the x64 runtime and goes without. It also differs
  // from run to run, so PACKAGE_CODE_CACHE=0 builds byte-identical binaries (to check a release against).
  const useCodeCache = generator.target.arch === target.arch && process.env.PACKAGE_CODE_CACHE !== '0';
  const assets = addonAsAsset ? { [ADDON_ASSET]: addon } : undefined;
  writeFileSync(seaConfig, JSON.stringify({ ...baseConfig, main: bundle, output: blob, useCodeCache, execArgv, assets }, null, 2));
  execFileSync(...commandFor(generator.target, generator.node, [...execArgv, '--experimental-sea-config', seaConfig]), {
    stdio: ['ignore', 'ignore', 'inherit'],
  });

  mkdirSync(DIST, { recursive: true });
  const output = join(DIST, binaryName(target.arch));
  rmSync(output, { force: true });
  copyFileSync(runtime.node, output);
  chmodSync(output, 0o755);
  // The runtimes ship with debug info and a full symbol table (12 MB); the dynamic symbols addons link against stay.
  execFileSync(`${target.crossPrefix ?? ''}strip`, ['--strip-all', output], { stdio: ['ignore', 'ignore', 'ignore'] });
  const postject = createRequire(import.meta.url).resolve('postject/dist/cli.js');
  execFileSync(process.execPath, [postject, output, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return output;
}

function readSeaConfig(): { v8Flags: string[] } & Record<string, unknown> {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'packaging/sea-config.json'), 'utf8')) as { v8Flags: string[] };
}

/**
 * The V8 flags a binary on this runtime starts with: packaging/sea-config.json's `v8Flags` (docs/benchmarks.md:
 * "Memory" for `--optimize-for-size`, "Memory while draining" for `--no-maglev`). Only a runtime that reads
 * `execArgv` from its blob (Node 24.6 and later) gets them; the armv7 runtime (20.11) has none.
 */
export function blobExecArgv(runtimeVersion: string): string[] {
  const [major = 0, minor = 0] = runtimeVersion.split('.').map(Number);
  return major > 24 || (major === 24 && minor >= 6) ? readSeaConfig().v8Flags : [];
}

/** sea.getRawAsset: Node 21.7 and 20.12; the armv7 runtime (20.11) has neither. */
function takesAssets(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 21 || (major === 21 && minor >= 7) || (major === 20 && minor >= 12);
}

const ADDON_ASSET = 'better_sqlite3.node';

/**
 * The addon goes into the blob as an asset, or into the bundle as base64 where the runtime has no assets. Its bytes
 * sit behind a function (src/lib/embedded-addon.ts says why); getRawAsset hands out the blob's own pages, no copy.
 */
async function bundleWithAddon(outfile: string, addonFile: string, asAsset: boolean): Promise<void> {
  const bytes = readFileSync(addonFile);
  const head = `name: 'better_sqlite3', sha256: ${JSON.stringify(createHash('sha256').update(bytes).digest('hex'))}`;
  const contents = asAsset
    ? `import { getRawAsset } from 'node:sea';\n` +
      `export const EMBEDDED_SQLITE_ADDON = { ${head}, bytes: () => Buffer.from(getRawAsset(${JSON.stringify(ADDON_ASSET)})) };`
    : `export const EMBEDDED_SQLITE_ADDON = { ${head}, bytes: () => Buffer.from(${JSON.stringify(bytes.toString('base64'))}, 'base64') };`;
  const embedAddon: Plugin = {
    name: 'embed-sqlite-addon',
    setup(pluginBuild) {
      pluginBuild.onLoad({ filter: /[\\/]src[\\/]lib[\\/]embedded-addon\.ts$/ }, () => ({ contents, loader: 'js' }));
    },
  };
  await build({
    entryPoints: [join(REPO_ROOT, 'src/bin.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    plugins: [embedAddon, await embedDashboard(), quietDebug],
    // The runtime keeps the whole source text for as long as the process lives (functions compile lazily from it):
    // minified, it is half the size. Names are kept: error classes report their name as a code.
    minify: true,
    keepNames: true,
    legalComments: 'none',
    logLevel: 'warning',
  });
}
