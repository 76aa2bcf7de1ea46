import type { CommandHandler } from './handler.js';
import type { K3sControl } from '../k3s/ports.js';

/**
 * `k3s.stop`: the operator's explicit stop of k3s (one SIGTERM). A restart of the agent never stops k3s, and k3s
 * stays stopped, also across agent restarts, until a command restarts it (k3s.restart, or an upgrade or configure).
 * Safe to repeat, so a restart of the agent resumes it.
 */
export function k3sStopHandler(k3s: K3sControl): CommandHandler<'k3s.stop'> {
  return {
    type: 'k3s.stop',
    onInterrupted: 'resume',
    run: async (context) => {
      context.progress('stop');
      await k3s.stopK3s(`k3s.stop command ${context.command.id}`);
      return { status: 'succeeded', detail: 'k3s stopped; it stays stopped until k3s.restart' };
    },
  };
}
