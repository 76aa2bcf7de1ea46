import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EMBEDDED_SQLITE_ADDON, type EmbeddedAddon } from './embedded-addon.js';
import { errorMessage, FleetletError } from './errors.js';

/** No candidate directory could hold a verified copy of the addon that also loaded. */
export class NativeAddonError extends FleetletError {
  readonly severity = 'fatal';
}

/**
 * Where the single binary may unpack its addon, best first: the state dir (writable on a read-only root, and
 * persistent, so boots after the first skip the write), then the user's cache, then a per-user temp dir.
 */
export function addonDirectories(stateDir: string, env: Record<string, string | undefined>): string[] {
  const uid = process.getuid?.() ?? 0;
  const dirs = [join(stateDir, 'native')];
  if (env.XDG_CACHE_HOME) dirs.push(join(env.XDG_CACHE_HOME, 'fleetlet'));
  else if (env.HOME) dirs.push(join(env.HOME, '.cache', 'fleetlet'));
  dirs.push(join(tmpdir(), `fleetlet-native-${uid}`));
  return dirs;
}

/**
 * Unpacks the embedded addon into the first usable directory and loads it with process.dlopen. The bytes on disk
 * are hashed right before loading, and the directory must be ours and closed to others, so nobody can swap the
 * file between the check and the load. Returns the addon's exports (better-sqlite3's `nativeBinding`).
 */
export function loadEmbeddedAddon(addon: EmbeddedAddon, dirs: readonly string[]): unknown {
  const failures: string[] = [];
  for (const dir of dirs) {
    try {
      const file = unpackVerified(addon, dir);
      const module = { exports: {} as unknown };
      process.dlopen(module, file);
      return module.exports;
    } catch (err) {
      failures.push(`${dir}: ${errorMessage(err)}`);
    }
  }
  throw new NativeAddonError(`cannot load the embedded ${addon.name} addon:\n  ${failures.join('\n  ')}`);
}

function unpackVerified(addon: EmbeddedAddon, dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  assertPrivateDirectory(dir);
  const file = join(dir, `${addon.name}-${addon.sha256.slice(0, 16)}.node`);
  if (!existsSync(file) || sha256(readFileSync(file)) !== addon.sha256) {
    const bytes = addon.bytes();
    if (sha256(bytes) !== addon.sha256) throw new Error('the embedded copy does not match its own hash (corrupt binary)');
    const partial = `${file}.${process.pid}.partial`;
    try {
      writeFileSync(partial, bytes, { mode: 0o500 });
      renameSync(partial, file);
    } finally {
      if (existsSync(partial)) unlinkSync(partial);
    }
  }
  if (sha256(readFileSync(file)) !== addon.sha256) throw new Error(`${file} changed after it was written`);
  return file;
}

function assertPrivateDirectory(dir: string): void {
  const stat = statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) throw new Error(`owned by uid ${stat.uid}, not by this user (${uid})`);
  if ((stat.mode & 0o022) !== 0) throw new Error(`writable by group or others (mode ${(stat.mode & 0o777).toString(8)})`);
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** better-sqlite3's `nativeBinding` in the single binary; undefined when running from source or the plain bundle. */
export function sqliteNativeBinding(
  stateDir: string,
  env: Record<string, string | undefined>,
  embedded: EmbeddedAddon | undefined = EMBEDDED_SQLITE_ADDON,
): unknown {
  return embedded ? loadEmbeddedAddon(embedded, addonDirectories(stateDir, env)) : undefined;
}
