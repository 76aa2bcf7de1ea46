import type { HubRolloutSummary } from '../../protocol/hub-rollouts-api.js';
import type { ExternalAlertReport } from './engine.js';

/**
 * 'rollout-halted' from the rollout engine's state changes: open while the rollout is halted, resolved once it goes
 * on, is aborted or ends. One alert per rollout (subject `rollout:<id>`).
 */
export function rolloutHaltedReport(rollout: HubRolloutSummary): ExternalAlertReport {
  const failed = (rollout.counts.failed ?? 0) + (rollout.counts.regressed ?? 0);
  return {
    rule: 'rollout-halted',
    subject: `rollout:${rollout.rolloutId}`,
    rolloutId: rollout.rolloutId,
    active: rollout.state === 'halted',
    severity: 'critical',
    summary: rollout.state === 'halted' ? `rollout halted: ${rollout.stateReason ?? 'failure threshold reached'}` : `rollout ${rollout.state}`,
    remedy: `read why on the rollout's page; resume it with a higher failure threshold (fleet rollout resume ${rollout.rolloutId} --max-failures N --hub) or abort it`,
    details: { description: rollout.description, batch: rollout.currentBatch + 1, batches: rollout.batchCount, devices: rollout.devices, failed },
  };
}
