import type { HubDatabase } from '../db/open.js';

/**
 * Keeps the alert tables bounded: resolved alerts older than hub.alerts.keepResolvedDays go, with their deliveries;
 * so do finished deliveries of alerts that stay open that long. Idempotent, so every replica may run it.
 */
export async function pruneAlerts(hub: HubDatabase, keepDays: number, nowMs: number): Promise<{ alerts: number; deliveries: number }> {
  const before = nowMs - keepDays * 86_400_000;
  const deliveries = await hub.db
    .deleteFrom('alert_deliveries')
    .where((eb) =>
      eb.or([
        eb('alert_id', 'in', eb.selectFrom('alerts').select('id').where('state', '=', 'resolved').where('resolved_at_ms', '<', before)),
        eb.and([eb('state', '!=', 'pending'), eb('done_at_ms', '<', before)]),
      ]),
    )
    .executeTakeFirst();
  const alerts = await hub.db.deleteFrom('alerts').where('state', '=', 'resolved').where('resolved_at_ms', '<', before).executeTakeFirst();
  return { alerts: Number(alerts.numDeletedRows), deliveries: Number(deliveries.numDeletedRows) };
}
