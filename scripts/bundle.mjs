// Bundles the agent into one CommonJS file: what the single binary embeds, and what the tests run as a real process.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

const outfile = process.argv[2] ?? 'dist/fleetlet.cjs';
await build({
  entryPoints: ['src/bin.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // The native addon is loaded from node_modules here; the single-binary build embeds it instead.
  external: ['better-sqlite3'],
  banner: { js: '#!/usr/bin/env node' },
  sourcemap: 'inline',
  legalComments: 'none',
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);
