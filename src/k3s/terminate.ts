import type { AgentProcess, ExitInfo } from './agent-process.js';
import type { Clock } from './supervisor-options.js';

/**
 * Stops a k3s process: ONE SIGTERM (a second one makes k3s exit 1 at once, k3s-facts §3), then SIGKILL if it is
 * still there after the grace period. Resolves with how it ended and whether it had to be killed.
 */
export async function terminateAgent(child: AgentProcess, graceMs: number, clock: Clock): Promise<{ exit: ExitInfo; forced: boolean }> {
  if (child.isRunning()) child.signal('SIGTERM');
  const graceTimer = new AbortController();
  const graceful = await Promise.race([
    child.exited.then(() => true),
    clock.sleep(graceMs, graceTimer.signal).then(
      () => false,
      () => true,
    ),
  ]);
  graceTimer.abort();
  if (!graceful) child.signal('SIGKILL');
  return { exit: await child.exited, forced: !graceful };
}
