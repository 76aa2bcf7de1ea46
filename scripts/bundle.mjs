// Bundles the agent into one CommonJS file: what the single binary embeds, and what the tests run as a real process.
// The hub's web dashboard is bundled first and carried inside it (see src/hub/dashboard/embedded.ts).
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';
import { tsImport } from 'tsx/esm/api';

const outfile = process.argv[2] ?? 'dist/fleetlet.cjs';
const { embedDashboard } = await tsImport('./embed-dashboard.ts', import.meta.url);
const { quietDebug } = await tsImport('./quiet-debug.ts', import.meta.url);
await build({
  entryPoints: ['src/bin.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // The native addon is loaded from node_modules here; the single-binary build embeds it instead.
  external: ['better-sqlite3'],
  plugins: [await embedDashboard(), quietDebug],
  banner: { js: '#!/usr/bin/env node' },
  sourcemap: 'inline',
  legalComments: 'none',
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);
