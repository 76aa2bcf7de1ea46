import type { DashboardBundle } from './bundle.js';

/**
 * The dashboard's bundle. scripts/bundle.mjs and scripts/build-sea.ts replace this whole file with the bundle built
 * at that time, so the binary carries every asset and needs neither esbuild nor the sources. Run from the sources
 * (tsx: `npm start`, tests of the API in process), it is built here, once, at start.
 */
export async function dashboardBundle(): Promise<DashboardBundle> {
  const { buildDashboardBundle } = await import('./web-build.js');
  return buildDashboardBundle();
}
