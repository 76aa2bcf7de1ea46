import { sql, type Kysely } from 'kysely';
import type { HubConfig } from '../config/hub-schema.js';
import type { HubDatabase } from './db/open.js';
import type { HubTables } from './db/tables.js';

/**
 * Keeps the database bounded: rolls raw status samples up into 5-minute and hourly buckets, then deletes what is
 * older than its retention (raw samples, rollups, events, results, presence history, remembered message ids,
 * rejected messages beyond their count). Runs every `hub.retention.intervalSeconds` in every replica; every step is
 * idempotent, so replicas running it at once only repeat each other's work.
 */
export const ROLLUP_BUCKETS = [300, 3600] as const;
const DAY_MS = 86_400_000;
/** Samples committed while a run reads are picked up by the next run: its window starts this much earlier. */
const WATERMARK_OVERLAP_MS = 60_000;
const WATERMARK = 'rollup_watermark_ms';

export interface RetentionOutcome {
  rolledUp: number;
  deleted: Record<string, number>;
}

export async function runRetention(hub: HubDatabase, retention: HubConfig['retention'], nowMs = Date.now()): Promise<RetentionOutcome> {
  const rolledUp = await rollUp(hub.db, nowMs);
  const deleted: Record<string, number> = {};
  const before = (days: number) => nowMs - days * DAY_MS;
  const prune = async (name: string, run: () => Promise<{ numDeletedRows: bigint }>) => {
    deleted[name] = Number((await run()).numDeletedRows);
  };
  const db = hub.db;
  await prune('status_samples', () => db.deleteFrom('status_samples').where('sampled_at_ms', '<', before(retention.rawStatusDays)).executeTakeFirst());
  await prune('status_rollups_300', () =>
    db.deleteFrom('status_rollups').where('bucket_seconds', '=', 300).where('bucket_start_ms', '<', before(retention.fiveMinuteDays)).executeTakeFirst(),
  );
  await prune('status_rollups_3600', () =>
    db.deleteFrom('status_rollups').where('bucket_seconds', '=', 3600).where('bucket_start_ms', '<', before(retention.hourlyDays)).executeTakeFirst(),
  );
  await prune('events', () => db.deleteFrom('events').where('received_at_ms', '<', before(retention.eventDays)).executeTakeFirst());
  await prune('command_results', () => db.deleteFrom('command_results').where('received_at_ms', '<', before(retention.resultDays)).executeTakeFirst());
  await prune('presence_history', () => db.deleteFrom('presence_history').where('received_at_ms', '<', before(retention.presenceDays)).executeTakeFirst());
  await prune('received_messages', () =>
    db.deleteFrom('received_messages').where('received_at_ms', '<', before(retention.messageIdDays)).executeTakeFirst(),
  );
  await prune('rejected_messages', () => db.deleteFrom('rejected_messages').where('received_at_ms', '<', before(retention.rejectedDays)).executeTakeFirst());
  const newest = await db.selectFrom('rejected_messages').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst();
  if (newest?.id != null) {
    const keepFrom = Number(newest.id) - retention.rejectedMaxRows;
    deleted.rejected_messages! += Number((await db.deleteFrom('rejected_messages').where('id', '<=', keepFrom).executeTakeFirst()).numDeletedRows);
  }
  await prune('operator_sessions', () => db.deleteFrom('operator_sessions').where('expires_at_ms', '<', nowMs).executeTakeFirst());
  await prune('login_attempts', () => db.deleteFrom('login_attempts').where('window_start_ms', '<', nowMs - DAY_MS).executeTakeFirst());
  return { rolledUp, deleted };
}

/**
 * Recomputes every bucket that holds a sample received since the last run (a backlog fills buckets of the past),
 * per device from its oldest such sample on. Aggregates are recomputed from the raw rows, so a repeat is harmless.
 */
async function rollUp(db: Kysely<HubTables>, nowMs: number): Promise<number> {
  const mark = await db.selectFrom('hub_counters').select('value').where('name', '=', WATERMARK).executeTakeFirst();
  const since = (mark?.value ?? 0) - WATERMARK_OVERLAP_MS;
  let rows = 0;
  for (const bucket of ROLLUP_BUCKETS) {
    // Literals, not parameters: PostgreSQL cannot type a parameter in a select list. Both are constants of this file.
    const width = sql.lit(bucket * 1000);
    const seconds = sql.lit(bucket);
    const result = await sql`
      INSERT INTO status_rollups (device_id, bucket_seconds, bucket_start_ms, samples, cpu_percent_avg, cpu_percent_max,
        memory_available_min, temperature_c_max, disk_free_min, k3s_unhealthy_samples, network_rx_rate_avg, network_tx_rate_avg)
      SELECT s.device_id, ${seconds}, (s.sampled_at_ms / ${width}) * ${width}, COUNT(*), AVG(s.cpu_percent), MAX(s.cpu_percent),
        MIN(s.memory_available_bytes), MAX(s.temperature_c), MIN(s.disk_free_bytes), SUM(1 - s.k3s_healthy),
        AVG(s.network_rx_rate), AVG(s.network_tx_rate)
      FROM status_samples s
      JOIN (SELECT device_id, (MIN(sampled_at_ms) / ${width}) * ${width} AS from_ms FROM status_samples
            WHERE received_at_ms >= ${since} GROUP BY device_id) touched
        ON touched.device_id = s.device_id AND s.sampled_at_ms >= touched.from_ms
      WHERE true -- SQLite needs a WHERE to tell the upsert's ON CONFLICT from a join's ON
      GROUP BY s.device_id, (s.sampled_at_ms / ${width}) * ${width}
      ON CONFLICT (device_id, bucket_seconds, bucket_start_ms) DO UPDATE SET
        samples = excluded.samples, cpu_percent_avg = excluded.cpu_percent_avg, cpu_percent_max = excluded.cpu_percent_max,
        memory_available_min = excluded.memory_available_min, temperature_c_max = excluded.temperature_c_max,
        disk_free_min = excluded.disk_free_min, k3s_unhealthy_samples = excluded.k3s_unhealthy_samples,
        network_rx_rate_avg = excluded.network_rx_rate_avg, network_tx_rate_avg = excluded.network_tx_rate_avg`.execute(db);
    rows += Number(result.numAffectedRows ?? 0n);
  }
  await db
    .insertInto('hub_counters')
    .values({ name: WATERMARK, value: nowMs })
    .onConflict((oc) => oc.column('name').doUpdateSet({ value: nowMs }))
    .execute();
  return rows;
}
