import type { HubDatabase } from '../db/open.js';
import type { Status } from '../../protocol/status.js';

/**
 * The outbox-backlog rule needs a trend, and a device row holds only its newest status: so each evaluation records,
 * per device whose backlog is at least `minMessages`, when the current rise began and from what value
 * (alert_tracks, in the database so that a restart or another replica continues it). Times are the device's
 * sample times, so a backlog sent late still shows its real pace. A backlog below the start of the rise ends it.
 */
export interface BacklogTrend {
  sinceMs: number;
  sinceValue: number;
  lastMs: number;
  lastValue: number;
}

const RULE = 'outbox-backlog';

export function backlogOf(status: Status | undefined): number | undefined {
  const depth = status?.outbox?.depth;
  return depth ? depth.status + depth.event + depth.result : undefined;
}

export async function updateBacklogTrends(
  hub: HubDatabase,
  samples: readonly { deviceId: string; backlog: number | undefined; sampledAtMs: number | null }[],
  minMessages: number,
): Promise<Map<string, BacklogTrend>> {
  const stored = await hub.db.selectFrom('alert_tracks').selectAll().where('rule', '=', RULE).execute();
  const previous = new Map(stored.map((t) => [t.subject, t]));
  const trends = new Map<string, BacklogTrend>();
  for (const { deviceId, backlog, sampledAtMs } of samples) {
    const known = previous.get(deviceId);
    previous.delete(deviceId);
    if (backlog === undefined || sampledAtMs === null || backlog < minMessages) {
      if (known) await hub.db.deleteFrom('alert_tracks').where('rule', '=', RULE).where('subject', '=', deviceId).execute();
      continue;
    }
    let trend: BacklogTrend;
    if (known && sampledAtMs <= known.last_ms) {
      trend = { sinceMs: known.since_ms, sinceValue: known.since_value, lastMs: known.last_ms, lastValue: known.last_value };
      trends.set(deviceId, trend);
      continue;
    }
    trend =
      known && backlog >= known.since_value
        ? { sinceMs: known.since_ms, sinceValue: known.since_value, lastMs: sampledAtMs, lastValue: backlog }
        : { sinceMs: sampledAtMs, sinceValue: backlog, lastMs: sampledAtMs, lastValue: backlog };
    const row = { since_ms: trend.sinceMs, since_value: trend.sinceValue, last_ms: trend.lastMs, last_value: trend.lastValue };
    await hub.db
      .insertInto('alert_tracks')
      .values({ rule: RULE, subject: deviceId, ...row })
      .onConflict((oc) => oc.columns(['rule', 'subject']).doUpdateSet(row))
      .execute();
    trends.set(deviceId, trend);
  }
  // Tracks of devices that are gone.
  for (const subject of previous.keys()) await hub.db.deleteFrom('alert_tracks').where('rule', '=', RULE).where('subject', '=', subject).execute();
  return trends;
}
