import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
/** The bundled CLI built by the global setup. */
export const FLEETLET_BUNDLE = join(REPO_ROOT, 'dist/fleetlet.cjs');

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'fleetlet-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
