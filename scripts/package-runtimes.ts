// Fetches the pinned Node runtime of a target with the ordinary npm client (`npm pack`, which also fills npm's
// own cache so a rebuild works offline), checks its integrity against the pin, and unpacks it once.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CACHE, type Target } from './package-targets.js';

export interface Runtime {
  /** The unpacked package: bin/node and include/node. */
  dir: string;
  node: string;
}

export function ensureRuntime(target: Target): Runtime {
  const { name, version, integrity } = target.runtime;
  const dir = join(CACHE, 'runtimes', `${name}-${version}`);
  const runtime = { dir, node: join(dir, 'bin/node') };
  if (existsSync(runtime.node)) return runtime;

  const downloads = join(CACHE, 'downloads');
  mkdirSync(downloads, { recursive: true });
  execFileSync('npm', ['pack', `${name}@${version}`, '--pack-destination', downloads, '--silent'], { stdio: 'inherit' });
  const tarball = join(downloads, `${name}-${version}.tgz`);
  const actual = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  if (actual !== integrity) throw new Error(`${name}@${version}: integrity ${actual} does not match the pinned ${integrity}`);

  const partial = `${dir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', partial, '--strip-components=1']);
  renameSync(partial, dir);
  rmSync(tarball);
  return runtime;
}
