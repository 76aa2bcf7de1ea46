import { spawn } from 'node:child_process';
import { expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';
import { descendantsOf } from '../helpers/processes.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';

/** `npm start` as a newcomer runs it: embedded broker, a real agent, the fleet's view; Ctrl-C stops it all. */
it('npm start shows the agent come online, and Ctrl-C stops agent and broker cleanly', async () => {
  const { dir, cleanup } = tempDir('fleetlet-sandbox-');
  const sandbox = spawn(process.execPath, ['--import', 'tsx', 'scripts/sandbox.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', FLEETLET_SANDBOX_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, like a terminal session: Ctrl-C goes to the whole group.
    detached: true,
  });
  let output = '';
  sandbox.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  sandbox.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => sandbox.once('exit', (code) => resolve(code)));
  try {
    await waitFor(() => output.includes('dev-sandbox is online, boot #'), 'the agent online in the fleet view', 45_000);
    // The fleet view shows what telemetry reports through the outbox and the link, k3s's real state included.
    await waitFor(() => /dev-sandbox status #\d+ .*; k3s \S+/.test(output), 'a status sample in the fleet view', 45_000);
    expect(output).toMatch(/embedded aedes/);
    expect(output).toContain(dir);
    const children = descendantsOf(sandbox.pid!);
    expect(children.length).toBeGreaterThan(0);

    process.kill(-sandbox.pid!, 'SIGINT'); // what Ctrl-C in a terminal does
    expect(await exited).toBe(0);
    expect(output).toMatch(/dev-sandbox is offline \(stopped\)/);
    expect(output).toMatch(/agent exited with 0/);
    await waitFor(() => children.every((pid) => !isAlive(pid)), 'no process left behind');
  } finally {
    if (sandbox.exitCode === null) process.kill(-sandbox.pid!, 'SIGKILL');
    cleanup();
  }
}, 90_000);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
