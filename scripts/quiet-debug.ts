import { fileURLToPath } from 'node:url';
import type { Plugin } from 'esbuild';

/**
 * Bundles scripts/quiet-debug-shim.cjs in place of the `debug` package (MQTT.js's diagnostics), for both bundles:
 * the test bundle and the single binary's. The shim says why.
 */
export const quietDebug: Plugin = {
  name: 'quiet-debug',
  setup(build) {
    const shim = fileURLToPath(new URL('./quiet-debug-shim.cjs', import.meta.url));
    build.onResolve({ filter: /^debug$/ }, () => ({ path: shim }));
  },
};
