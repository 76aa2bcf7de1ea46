import type { HubDatabase } from '../db/open.js';
import { iso } from './device-queries.js';
import type { History, HistoryQuery } from '../../protocol/hub-api.js';

type Point = History['points'][number];

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const BUCKET_SECONDS = { '5m': 300, '1h': 3600 } as const;

/**
 * `GET /api/v1/devices/{id}/history`: status over [from, to). `raw` reads the samples (kept
 * hub.retention.rawStatusDays), `5m` and `1h` the rollups the retention job builds; `auto` picks by the span.
 */
export async function statusHistory(hub: HubDatabase, deviceId: string, query: HistoryQuery, now: number): Promise<History> {
  const to = query.to ? Date.parse(query.to) : now;
  const from = query.from ? Date.parse(query.from) : to - DAY_MS;
  const span = to - from;
  const step = query.step !== 'auto' ? query.step : span <= 6 * HOUR_MS ? 'raw' : span <= 7 * DAY_MS ? '5m' : '1h';
  const base = { deviceId, step, from: iso(from), to: iso(to) };

  // jscpd:ignore-start -- raw samples and rollups are two tables of one shape, each query typed by its own table.
  if (step === 'raw') {
    const rows = await hub.db
      .selectFrom('status_samples')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('sampled_at_ms', '>=', from)
      .where('sampled_at_ms', '<', to)
      .orderBy('sampled_at_ms')
      .limit(query.limit + 1)
      .execute();
    return {
      ...base,
      ...pointsOf(rows, query.limit, (r) => ({
        at: iso(r.sampled_at_ms),
        samples: 1,
        cpuPercentAvg: r.cpu_percent,
        cpuPercentMax: r.cpu_percent,
        memoryAvailableMin: r.memory_available_bytes,
        temperatureCMax: r.temperature_c,
        diskFreeMin: r.disk_free_bytes,
        k3sUnhealthySamples: r.k3s_healthy === 1 ? 0 : 1,
        networkRxRateAvg: r.network_rx_rate,
        networkTxRateAvg: r.network_tx_rate,
      })),
    };
  }

  const rows = await hub.db
    .selectFrom('status_rollups')
    .selectAll()
    .where('device_id', '=', deviceId)
    .where('bucket_seconds', '=', BUCKET_SECONDS[step])
    .where('bucket_start_ms', '>=', from - (from % (BUCKET_SECONDS[step] * 1000)))
    .where('bucket_start_ms', '<', to)
    .orderBy('bucket_start_ms')
    .limit(query.limit + 1)
    .execute();
  // jscpd:ignore-end
  return {
    ...base,
    ...pointsOf(rows, query.limit, (r) => ({
      at: iso(r.bucket_start_ms),
      samples: r.samples,
      cpuPercentAvg: r.cpu_percent_avg,
      cpuPercentMax: r.cpu_percent_max,
      memoryAvailableMin: r.memory_available_min,
      temperatureCMax: r.temperature_c_max,
      diskFreeMin: r.disk_free_min,
      k3sUnhealthySamples: r.k3s_unhealthy_samples,
      networkRxRateAvg: r.network_rx_rate_avg,
      networkTxRateAvg: r.network_tx_rate_avg,
    })),
  };
}

/** Queries fetch one row more than `limit`: its presence says the range holds more than was returned. */
function pointsOf<R>(rows: R[], limit: number, point: (row: R) => Point): { points: Point[]; truncated: boolean } {
  return { points: rows.slice(0, limit).map(point), truncated: rows.length > limit };
}
