import { join } from 'node:path';
import { build } from 'esbuild';
import { REPO_ROOT } from './paths.js';

/**
 * Bundles a TypeScript child program from test/fixtures into one CommonJS file, as the agent itself is bundled, so
 * that a test can start it (and SIGKILL it) as a real process without a TypeScript loader in between.
 */
export async function bundleFixture(fixture: string, outfile: string): Promise<void> {
  await build({
    entryPoints: [join(REPO_ROOT, 'test/fixtures', fixture)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['better-sqlite3'],
    logLevel: 'warning',
  });
}
