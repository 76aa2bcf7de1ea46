import type { CommandHandler } from './handler.js';
import type { K3sControl } from '../k3s/ports.js';

/** `k3s.restart`: one clean restart, then wait for health. Safe to repeat, so a restart of the agent resumes it. */
export function k3sRestartHandler(k3s: K3sControl, healthTimeoutMs: number): CommandHandler<'k3s.restart'> {
  return {
    type: 'k3s.restart',
    onInterrupted: 'resume',
    run: async (context) => {
      context.progress('restart');
      await k3s.restart();
      context.progress('wait_health');
      const health = await k3s.waitHealthy(healthTimeoutMs, context.signal);
      return health.healthy
        ? { status: 'succeeded', detail: 'k3s restarted and healthy' }
        : { status: 'failed', reason: 'unhealthy', detail: `k3s restarted but is not healthy: ${health.reason}` };
    },
  };
}
