import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { waitFor } from '../helpers/wait.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';

// The agent is a long-lived daemon on boards with 512 MiB: code it never runs must not sit in its heap. These run
// the real CLI from source with a loader hook that records every module Node resolves.
const TRACER = join(REPO_ROOT, 'test/fixtures/module-trace.mjs');
const ON_DEMAND = [/\/src\/fleet\//, /\/src\/cli\/(doctor|provision|status|uninstall|k3s|fleet)/, /\/src\/hub\//, /pino-pretty/, /\/config\/json-schema/, /systeminformation/];

let cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
});

async function modulesLoadedBy(args: string[], done: (dir: string) => boolean): Promise<string[]> {
  const { dir, cleanup } = tempDir('fleetlet-modules-');
  cleanups.push(cleanup);
  const trace = join(dir, 'modules.txt');
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', TRACER, join(REPO_ROOT, 'src/bin.ts'), ...args.map((a) => a.replace('DIR', dir))], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, MODULE_TRACE_FILE: trace },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await waitFor(() => done(dir) || child.exitCode !== null, 'the command to get going', 30_000);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
  expect(existsSync(trace), stderr).toBe(true);
  return readFileSync(trace, 'utf8').split('\n').filter(Boolean);
}

describe('what the agent loads', () => {
  it('the running agent loads no operator, doctor, provision, status, pretty-printing or systeminformation code', async () => {
    let config = '';
    const modules = await modulesLoadedBy(['agent', '--config', 'DIR/config.yaml'], (dir) => {
      config ||= writeAgentConfig(dir, { telemetry: { http: { enabled: false }, statusSocket: { enabled: true } } });
      // The status socket is served once every part has started.
      return existsSync(join(dir, 'state/status.sock'));
    });
    expect(modules.some((url) => url.includes('/src/main.ts'))).toBe(true);
    expect(modules.some((url) => url.includes('/src/link/link.ts'))).toBe(true);
    expect(modules.filter((url) => ON_DEMAND.some((pattern) => pattern.test(url)))).toEqual([]);
  }, 60_000);

  it('`fleet` loads the operator code when it is asked for', async () => {
    const modules = await modulesLoadedBy(['fleet', 'keygen', 'DIR/ops.key'], (dir) => existsSync(join(dir, 'ops.key')));
    expect(modules.some((url) => /\/src\/fleet\/keygen\.ts$/.test(url))).toBe(true);
  }, 60_000);
});
