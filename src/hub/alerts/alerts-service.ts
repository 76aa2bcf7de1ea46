import type { HubAlertsConfig } from '../../config/hub-alerts-schema.js';
import type { Logger } from '../../lib/logger.js';
import type { HubDatabase } from '../db/open.js';
import { AlertEngine, type ExternalSource } from './engine.js';
import { WebhookDeliverer } from './webhook-deliverer.js';
import { loadWebhookTargets } from './webhook-secrets.js';

/**
 * The alert engine and the webhook deliveries of one replica, started together over the hub's database. The webhook
 * keys are read first, so a bad secretFile stops the start instead of failing every delivery later.
 */
export interface RunningAlerts {
  readonly engine: AlertEngine;
  stop(): Promise<void>;
}

export function startAlerts(hub: HubDatabase, config: HubAlertsConfig, log: Logger, sources: ExternalSource[] = []): RunningAlerts {
  const targets = loadWebhookTargets(config.webhooks);
  const engine = new AlertEngine({ hub, config, log, sources });
  const deliverer = new WebhookDeliverer({ hub, targets, delivery: config.delivery, log });
  engine.start();
  deliverer.start();
  log.info({ rulesEvery: config.intervalSeconds, webhooks: [...targets.keys()] }, 'hub alerts running');
  return {
    engine,
    async stop() {
      await engine.stop();
      await deliverer.stop();
    },
  };
}
