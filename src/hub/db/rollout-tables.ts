import type { Selectable } from 'kysely';

/** The tables of the rollouts the hub runs, part of HubTables (tables.ts), same conventions. */

/** A rollout the hub runs: its plan, its state, and the batch in progress. */
export interface RolloutsTable {
  rollout_id: string;
  /** k3s.upgrade | agent.upgrade | k3s.configure */
  kind: string;
  description: string;
  /** running | paused | halted | aborted | completed | expired */
  state: string;
  state_reason: string | null;
  created_by: string;
  created_at_ms: number;
  updated_at_ms: number;
  deadline_ms: number;
  /** 1 when the first batch is the canary batch (any failure in it halts). */
  canaries: number;
  /** A RolloutAmount: { count } or { percent }. */
  max_failures_json: string;
  /** 1 once an operator resumed a halted rollout with a new threshold: the canaries' zero no longer applies. */
  threshold_raised: number;
  device_timeout_seconds: number;
  watch_seconds: number;
  batch_count: number;
  current_batch: number;
}

/** One device of a rollout: the command the operator signed for it, and what became of it. */
export interface RolloutDevicesTable {
  rollout_id: string;
  device_id: string;
  batch_index: number;
  command_id: string;
  /** The signed envelope exactly as the operator sent it; the hub only publishes it. */
  envelope_json: string;
  /** pending | waiting-offline | sent | watching | succeeded | failed | regressed | skipped */
  outcome: string;
  detail: string | null;
  /** Written before the envelope is published: a restarted hub publishes again only what has no result. */
  sent_at_ms: number | null;
  finished_at_ms: number | null;
  /** While watching: when the watch for a health regression ends. */
  watch_until_ms: number | null;
}

/** Who drives the rollouts: one replica holds the lease and renews it; another takes over once it expired. */
export interface RolloutLeasesTable {
  lease_name: string;
  owner: string;
  expires_at_ms: number;
}

export type RolloutRow = Selectable<RolloutsTable>;
export type RolloutDeviceRow = Selectable<RolloutDevicesTable>;
