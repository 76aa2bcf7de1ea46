import type { IngestItem } from './ingest/classify.js';
import type { CommitOutcome } from './ingest/commit-batch.js';

/**
 * Counters the hub keeps about itself, rendered in the Prometheus text format by hubMetricsText (the HTTP API
 * serves it at /metrics). One instance per running hub, passed around; nothing global.
 */
export class HubMetrics {
  received = 0;
  stored = 0;
  duplicates = 0;
  rejected = 0;
  commits = 0;
  commitFailures = 0;
  commitSecondsSum = 0;
  commitSecondsMax = 0;
  /** Device clock to commit, of the newest live (not historical) status or event committed. */
  lagSeconds = 0;
  lastCommitAtMs = 0;
  connectionsUp = 0;

  recordCommit(outcome: CommitOutcome, items: readonly IngestItem[], durationMs: number, nowMs = Date.now()): void {
    this.commits += 1;
    this.stored += outcome.stored;
    this.duplicates += outcome.duplicates;
    this.rejected += outcome.rejected;
    this.commitSecondsSum += durationMs / 1000;
    this.commitSecondsMax = Math.max(this.commitSecondsMax, durationMs / 1000);
    this.lastCommitAtMs = nowMs;
    for (const item of items) {
      const deviceTime =
        item.channel === 'status' && !item.status.historical ? Date.parse(item.status.sampledAt)
        : item.channel === 'events' && !item.event.historical ? Date.parse(item.event.occurredAt)
        : undefined;
      if (deviceTime !== undefined) this.lagSeconds = Math.max(0, (nowMs - deviceTime) / 1000);
    }
  }
}

export interface MetricsSnapshot {
  metrics: HubMetrics;
  /** Messages received and not yet committed. */
  waiting: number;
  databaseBytes: number;
}

export function hubMetricsText({ metrics: m, waiting, databaseBytes }: MetricsSnapshot): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, value: number) =>
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${Number.isFinite(value) ? value : 0}`);
  metric('fleetlet_hub_messages_received_total', 'counter', 'Messages received from the broker.', m.received);
  metric('fleetlet_hub_messages_stored_total', 'counter', 'Reports committed to the database (ingest rate: rate() of this).', m.stored);
  metric('fleetlet_hub_messages_duplicate_total', 'counter', 'Re-sent reports recognised by their messageId and not stored again.', m.duplicates);
  metric('fleetlet_hub_messages_rejected_total', 'counter', 'Invalid messages kept aside.', m.rejected);
  metric('fleetlet_hub_commits_total', 'counter', 'Database commits (each acknowledges its messages to the broker).', m.commits);
  metric('fleetlet_hub_commit_failures_total', 'counter', 'Commits that failed and were retried.', m.commitFailures);
  metric('fleetlet_hub_commit_seconds_sum', 'counter', 'Time spent committing.', m.commitSecondsSum);
  metric('fleetlet_hub_commit_seconds_max', 'gauge', 'Longest commit since start.', m.commitSecondsMax);
  metric('fleetlet_hub_ingest_lag_seconds', 'gauge', 'From the device clock to the commit, for the newest live report.', m.lagSeconds);
  metric('fleetlet_hub_messages_waiting', 'gauge', 'Messages received and not committed yet.', waiting);
  metric('fleetlet_hub_last_commit_timestamp_seconds', 'gauge', 'When the last commit ended.', m.lastCommitAtMs / 1000);
  metric('fleetlet_hub_connections_up', 'gauge', 'MQTT connections to the broker that are up.', m.connectionsUp);
  metric('fleetlet_hub_database_bytes', 'gauge', 'Size of the hub database.', databaseBytes);
  return `${lines.join('\n')}\n`;
}
