import type { CommandHandler } from './handler.js';
import type { TrustState } from './trust-state.js';

/**
 * `trust.update`: puts a newer trust document in force. Safe to run again after a restart: the document already
 * in force is reported as such, so a cut between the write and the result still ends in `succeeded`.
 */
export function trustUpdateHandler(trust: TrustState): CommandHandler<'trust.update'> {
  return {
    type: 'trust.update',
    onInterrupted: 'resume',
    run: async (context) => {
      const applied = await trust.apply(context.command.args.document);
      if (!applied.ok) return { status: 'failed', reason: applied.reason, detail: applied.detail };
      context.logger.info({ version: context.command.args.document.document.version }, 'trust document updated');
      return { status: 'succeeded', detail: applied.detail };
    },
  };
}
