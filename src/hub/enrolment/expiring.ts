import type { HubDatabase } from '../db/open.js';

/** An active device whose newest certificate ends soon: the alert engine raises "certificate near expiry" from these. */
export interface ExpiringCertificate {
  deviceId: string;
  serial: string;
  notAfterMs: number;
}

/**
 * Active devices whose current certificate expires within `withinDays` of `now`, soonest first (also those already
 * expired: a device offline past its expiry must re-enrol with its renewal credential). Revoked devices are left
 * out: their certificates end on purpose.
 */
export async function certificatesExpiringWithin(hub: HubDatabase, withinDays: number, now: number): Promise<ExpiringCertificate[]> {
  const rows = await hub.db
    .selectFrom('enrolled_devices')
    .select(['device_id', 'current_serial', 'not_after_ms'])
    .where('state', '=', 'active')
    .where('not_after_ms', '<=', now + withinDays * 86_400_000)
    .orderBy('not_after_ms')
    .orderBy('device_id')
    .execute();
  return rows.map((r) => ({ deviceId: r.device_id, serial: r.current_serial ?? '', notAfterMs: Number(r.not_after_ms) }));
}
