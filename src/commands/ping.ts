import type { CommandHandler } from './handler.js';

/** Proves the whole path works: signed, verified, journaled, answered. Carries the agent's version and clock. */
export function pingHandler(agentVersion: string, now: () => number = Date.now): CommandHandler<'ping'> {
  return {
    type: 'ping',
    onInterrupted: 'resume',
    run: async () => ({ status: 'succeeded', detail: 'pong', data: { agentVersion, deviceTime: now() } }),
  };
}
