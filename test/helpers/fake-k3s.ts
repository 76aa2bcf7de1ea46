import { join } from 'node:path';
import { REPO_ROOT } from './paths.js';

export const FAKE_K3S = join(REPO_ROOT, 'test/fixtures/fake-k3s/k3s.js');

/**
 * A release "binary": a script that runs the fake k3s, padded to `sizeBytes` so that downloads take several
 * chunks (truncation and progress are then observable). The padding is a comment, so the script still runs.
 * With `version`, `--version` and the start line report it (the fake's own version otherwise).
 */
export function fakeK3sBinary(sizeBytes = 2 * 1024 * 1024, variant = '', version?: string): Buffer {
  const versionLine = version ? `// fake-k3s-version: ${version}\n` : '';
  const head = `#!/usr/bin/env node\n// ${variant}\n${versionLine}import ${JSON.stringify(FAKE_K3S)};\n`;
  const padding = Math.max(0, sizeBytes - head.length - 4);
  return Buffer.from(`${head}/*${'x'.repeat(padding)}*/\n`);
}

/**
 * A release "binary" of a given version: `--version` prints it, and `agent` runs the fake k3s, which serves a
 * failing kubelet healthz when `never-healthy` (a build that starts but never becomes healthy). Versions differ in
 * their bytes, so each has its own sha256.
 */
export function fakeK3sRelease(version: string, behaviour: 'healthy' | 'never-healthy' = 'healthy'): Buffer {
  return Buffer.from(`#!/usr/bin/env node
// fake k3s ${version} (${behaviour})
process.env.FAKE_K3S_VERSION = ${JSON.stringify(version)};
${behaviour === 'never-healthy' ? "process.env.FAKE_K3S_HEALTHZ = 'fail';\n" : ''}// No import statement and no top-level await: it also runs as \`k3s.previous\`, an extension node loads as CommonJS.
void import(${JSON.stringify(FAKE_K3S)});
`);
}
