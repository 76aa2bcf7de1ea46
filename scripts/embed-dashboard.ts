// The esbuild plugin that puts the hub's web dashboard inside the main bundle: it builds the dashboard once and
// replaces src/hub/dashboard/embedded.ts by a module returning that bundle, so the binary needs no files beside it.
import type { Plugin } from 'esbuild';
import { buildDashboardBundle } from '../src/hub/dashboard/web-build.js';

export async function embedDashboard(): Promise<Plugin> {
  const bundle = await buildDashboardBundle();
  return {
    name: 'embed-dashboard',
    setup(pluginBuild) {
      pluginBuild.onLoad({ filter: /[\\/]src[\\/]hub[\\/]dashboard[\\/]embedded\.ts$/ }, () => ({
        contents: `export async function dashboardBundle() { return ${JSON.stringify(bundle)}; }`,
        loader: 'js',
      }));
    },
  };
}
