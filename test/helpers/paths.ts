import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
/** The bundled CLI built by the global setup. */
export const FLEETLET_BUNDLE = join(REPO_ROOT, 'dist/fleetlet.cjs');

/** A fresh temporary directory, removed by the returned cleanup. */
/** `base` is the os temp dir unless given (/dev/shm for a directory in RAM). */
export function tempDir(prefix = 'fleetlet-test-', base = tmpdir()): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(base, prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
