import type { Config } from '../../config/schema.js';
import type { Logger } from '../../lib/logger.js';
import type { HubRolloutSummary } from '../../protocol/hub-rollouts-api.js';
import { Topics } from '../../protocol/topics.js';
import type { HubDatabase } from '../db/open.js';
import { hubBrokerOptions } from '../ingest/broker-options.js';
import { MqttCommandPublisher } from './command-publisher.js';
import { RolloutEngine } from './rollout-engine.js';

export interface RunningRollouts {
  readonly engine: RolloutEngine;
  stop(): Promise<void>;
}

/** The rollout engine of one hub replica with its publisher on the hub's broker; every replica runs one, the lease picks who drives. */
export function startRollouts(options: {
  database: HubDatabase;
  replicaId: string;
  config: Config;
  log: Logger;
  onStateChange?: (rollout: HubRolloutSummary) => void;
}): RunningRollouts {
  const { config, log } = options;
  const publisher = new MqttCommandPublisher(
    config.broker.url,
    hubBrokerOptions(config.broker),
    `fleetlet-hub-${options.replicaId}-rollouts`,
    new Topics(config.broker.topicRoot),
    log,
  );
  const engine = new RolloutEngine({
    hub: options.database,
    publisher,
    replicaId: options.replicaId,
    log,
    ...(options.onStateChange ? { onStateChange: options.onStateChange } : {}),
  });
  engine.start();
  return {
    engine,
    async stop() {
      await engine.stop();
      await publisher.close();
    },
  };
}
