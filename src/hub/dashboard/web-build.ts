import { join } from 'node:path';
import { build } from 'esbuild';
import type { DashboardBundle } from './bundle.js';

/**
 * Bundles the dashboard (web/main.ts and the stylesheets it imports) in memory with esbuild: at bundle time for the
 * binary (scripts/bundle.mjs, scripts/build-sea.ts embed the result), and at start under tsx, where nothing was
 * bundled. Minified, for browsers of the last few years; nothing is loaded from elsewhere at run time.
 */
export async function buildDashboardBundle(): Promise<DashboardBundle> {
  const result = await build({
    entryPoints: { app: join(import.meta.dirname, 'web/main.ts') },
    outdir: 'out',
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: ['chrome109', 'firefox115', 'safari15'],
    minify: true,
    legalComments: 'none',
    logLevel: 'warning',
  });
  const text = (extension: string): string => {
    const file = result.outputFiles.find((f) => f.path.endsWith(extension));
    if (!file) throw new Error(`the dashboard build made no ${extension} file`);
    return file.text;
  };
  return { js: text('.js'), css: text('.css') };
}
