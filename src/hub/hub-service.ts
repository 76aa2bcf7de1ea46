import { hostname } from 'node:os';
import type { Config } from '../config/schema.js';
import type { Logger } from '../lib/logger.js';
import { Topics } from '../protocol/topics.js';
import { openHubDatabase, readPasswordFile, type HubDatabase } from './db/open.js';
import { hubBrokerOptions } from './ingest/broker-options.js';
import { commitBatch } from './ingest/commit-batch.js';
import { GroupCommitter } from './ingest/group-commit.js';
import { MqttIngest } from './ingest/mqtt-ingest.js';
import { HubMetrics, hubMetricsText } from './metrics.js';
import { runRetention } from './retention.js';

/**
 * One running hub replica: its database, its MQTT sessions feeding group commits, and the retention job. The
 * HTTP API is given `database` and `metricsText`. stop() stops taking batches, waits for the commit in progress,
 * closes the connections (what was not committed is not acknowledged: the broker keeps it) and the database.
 */
export interface RunningHub {
  readonly database: HubDatabase;
  readonly metrics: HubMetrics;
  readonly replicaId: string;
  /** The Prometheus text of the hub's own metrics (ingest rate, lag, rejects, database size). */
  metricsText(): Promise<string>;
  /** Resolves once every MQTT connection subscribed once. */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

export interface StartHubOptions {
  config: Config;
  log: Logger;
  nativeBinding?: unknown;
}

export async function startHub({ config, log, nativeBinding }: StartHubOptions): Promise<RunningHub> {
  const hub = config.hub;
  const database = await openHubDatabase({
    url: hub.database.url,
    password: hub.database.passwordFile ? readPasswordFile(hub.database.passwordFile) : undefined,
    file: hub.database.file,
    maxConnections: hub.database.maxConnections,
    nativeBinding,
  });
  const replicaId = hub.replicaId ?? defaultReplicaId();
  const metrics = new HubMetrics();
  const committer = new GroupCommitter({
    commit: (items) => commitBatch(database, items, { conflictWindowMs: hub.identityConflictWindowSeconds * 1000 }),
    maxMessages: hub.batch.maxMessages,
    maxWaitMs: hub.batch.maxWaitMs,
    // Each connection (and the reader of retained copies) holds at most one message at a time.
    writers: () => hub.connections + 1,
    onCommitted: (outcome, items, ms) => metrics.recordCommit(outcome, items, ms),
    onFailure: (err, size, attempt) => {
      metrics.commitFailures += 1;
      log.error({ err: err instanceof Error ? err.message : String(err), size, attempt }, 'hub commit failed; retrying (nothing is acknowledged meanwhile)');
    },
  });
  const ingest = new MqttIngest({
    brokerUrl: config.broker.url,
    base: hubBrokerOptions(config.broker),
    topics: new Topics(config.broker.topicRoot),
    replicaId,
    shareGroup: hub.shareGroup,
    connections: hub.connections,
    sessionExpirySeconds: hub.sessionExpirySeconds,
    maxMessageBytes: config.limits.maxMessageBytes,
    committer,
    metrics,
    log,
  });
  ingest.start();
  void ingest.ready().then(() => log.info({ replicaId, connections: hub.connections }, 'hub subscribed: ingesting'));
  const retention = startRetention(database, config, log);
  log.info({ replicaId, database: database.location, dialect: database.dialect, broker: config.broker.url }, 'fleetlet hub running');
  return {
    database,
    metrics,
    replicaId,
    metricsText: async () => hubMetricsText({ metrics, waiting: committer.waiting, databaseBytes: await database.sizeBytes() }),
    ready: () => ingest.ready(),
    async stop() {
      await retention.stop();
      await committer.stop();
      await ingest.stop();
      await database.close();
    },
  };
}

/** The host name, made fit for a client id; stable across restarts of the same host. */
function defaultReplicaId(): string {
  return hostname().toLowerCase().replace(/[^a-z0-9_-]/g, '-').slice(0, 32) || 'hub';
}

function startRetention(database: HubDatabase, config: Config, log: Logger): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const run = () => {
    if (running) return;
    running = runRetention(database, config.hub.retention)
      .then((outcome) => log.debug(outcome, 'hub retention run'))
      .catch((err: unknown) => log.error({ err: err instanceof Error ? err.message : String(err) }, 'hub retention run failed; retried at the next interval'))
      .finally(() => (running = undefined));
  };
  // The first run waits an interval too: on SQLite it shares the one connection with ingest, and a replica that
  // restarts often (a crash loop, a deploy) should drain its backlog first.
  const timer = setInterval(run, config.hub.retention.intervalSeconds * 1000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
