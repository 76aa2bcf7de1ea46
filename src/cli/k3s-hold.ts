import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readProcessRecord, recordedAgentRunning } from '../k3s/agent-process.js';
import { clearHold, writeHold } from '../k3s/hold.js';
import { RECORD_FILE } from '../k3s/supervisor.js';
import { EXIT } from './exit-codes.js';
import type { CliIo } from './program.js';

const POLL_MS = 100;

/**
 * `fleetlet k3s stop`. A restart of fleetlet never stops k3s, so this is how a person stops it. It works the same
 * whether an agent runs or not, without talking to it: the hold is written first (durably), so no agent starts k3s
 * again, this one or the next; then this command sends the recorded k3s its one SIGTERM itself. The agent only
 * sees k3s exit, finds the hold and stays in `held`: one sender, so k3s never gets the second SIGTERM that makes it
 * exit 1. A k3s the agent was starting at that moment shows up in the record and is signalled as well.
 */
export async function stopHeldK3s(workDir: string, dataDir: string, timeoutMs: number, io: CliIo): Promise<number> {
  await writeHold(workDir, 'fleetlet k3s stop');
  const signalled: number[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const record = readProcessRecord(join(workDir, RECORD_FILE));
    const running = record !== undefined && recordedAgentRunning(record, dataDir) ? record.pid : undefined;
    if (running === undefined) break;
    if (!signalled.includes(running)) {
      process.kill(running, 'SIGTERM');
      signalled.push(running);
    }
    if (Date.now() >= deadline) {
      io.stderr(`fleetlet k3s: k3s (pid ${running}) still runs ${timeoutMs} ms after its SIGTERM; run k3s-killall.sh to force it\n`);
      return EXIT.FAILURE;
    }
    await sleep(POLL_MS);
  }
  const what = signalled.length > 0 ? `stopped k3s (pid ${signalled.join(', ')})` : 'k3s is not running';
  io.stdout(`${what}; it stays stopped, across restarts of fleetlet and reboots, until \`fleetlet k3s start\`\n`);
  return EXIT.OK;
}

/** `fleetlet k3s start`: lifts the hold; the supervisor starts k3s at its next look, or at its own start. */
export async function releaseHeldK3s(workDir: string, io: CliIo): Promise<number> {
  const lifted = await clearHold(workDir);
  io.stdout(lifted ? 'k3s may run again: the agent starts it within seconds (or when it starts)\n' : 'k3s was not stopped by `fleetlet k3s stop`; nothing to do\n');
  return EXIT.OK;
}
