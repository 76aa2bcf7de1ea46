import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { EmbeddedAddon } from '../../src/lib/embedded-addon.js';
import { NativeAddonError, addonDirectories, loadEmbeddedAddon, sqliteNativeBinding } from '../../src/lib/native-addon.js';
import { tempDir } from '../helpers/paths.js';

// The host build of the addon stands in for the one the package build embeds.
const hostAddon = join(createRequire(import.meta.url).resolve('better-sqlite3/package.json'), '../build/Release/better_sqlite3.node');
const bytes = readFileSync(hostAddon);
const embedded: EmbeddedAddon = {
  name: 'better_sqlite3',
  sha256: createHash('sha256').update(bytes).digest('hex'),
  bytes: () => bytes,
};
const unpackedName = `better_sqlite3-${embedded.sha256.slice(0, 16)}.node`;

function scratch(): string {
  const { dir, cleanup } = tempDir('fleetlet-addon-');
  onTestFinished(cleanup);
  return dir;
}

describe('embedded native addon', () => {
  it('reads the embedded bytes only when the unpacked copy is missing, not at every start', () => {
    const dir = join(scratch(), 'native');
    let reads = 0;
    const counted: EmbeddedAddon = { ...embedded, bytes: () => (reads++, bytes) };
    loadEmbeddedAddon(counted, [dir]);
    expect(reads).toBe(1);
    loadEmbeddedAddon(counted, [dir]);
    expect(reads).toBe(1);
  });

  it('unpacks into a private directory and loads as better-sqlite3 nativeBinding', () => {
    const dir = join(scratch(), 'native');
    const binding = loadEmbeddedAddon(embedded, [dir]);
    const db = new BetterSqlite3(':memory:', { nativeBinding: binding as string });
    expect(db.prepare('SELECT 6 * 7 AS answer').get()).toEqual({ answer: 42 });
    db.close();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, unpackedName)).mode & 0o777).toBe(0o500);
    expect(readdirSync(dir)).toEqual([unpackedName]);
  });

  it('replaces a tampered file instead of loading it', () => {
    const dir = scratch();
    writeFileSync(join(dir, unpackedName), 'not the addon');
    chmodSync(dir, 0o700);
    loadEmbeddedAddon(embedded, [dir]);
    expect(createHash('sha256').update(readFileSync(join(dir, unpackedName))).digest('hex')).toBe(embedded.sha256);
  });

  it('skips a directory that others can write to, and uses the next one', () => {
    const open = scratch();
    chmodSync(open, 0o777);
    const next = join(scratch(), 'next');
    loadEmbeddedAddon(embedded, [open, next]);
    expect(existsSync(join(open, unpackedName))).toBe(false);
    expect(existsSync(join(next, unpackedName))).toBe(true);
  });

  it('refuses an embedded copy that does not match its hash, naming every directory tried', () => {
    const corrupt = { ...embedded, bytes: () => Buffer.from('truncated') };
    const [a, b] = [join(scratch(), 'a'), join(scratch(), 'b')];
    const attempt = () => loadEmbeddedAddon(corrupt, [a, b]);
    expect(attempt).toThrow(NativeAddonError);
    expect(attempt).toThrow(new RegExp(`${a}: the embedded copy does not match its own hash[\\s\\S]*${b}:`));
  });

  it('looks in the state dir first, then the cache, then a per-user temp dir', () => {
    const dirs = addonDirectories('/var/lib/fleetlet', { XDG_CACHE_HOME: '/cache', HOME: '/home/pi' });
    expect(dirs.slice(0, 2)).toEqual(['/var/lib/fleetlet/native', '/cache/fleetlet']);
    expect(dirs[2]).toMatch(/fleetlet-native-\d+$/);
    expect(addonDirectories('/s', { HOME: '/home/pi' })[1]).toBe('/home/pi/.cache/fleetlet');
  });

  it('gives no binding when nothing is embedded (source tree and plain bundle)', () => {
    const stateDir = scratch();
    expect(sqliteNativeBinding(stateDir, {}, undefined)).toBeUndefined();
    mkdirSync(stateDir, { recursive: true });
    expect(readdirSync(stateDir)).toEqual([]);
  });
});
