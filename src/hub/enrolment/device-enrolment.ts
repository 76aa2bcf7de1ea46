import type { z } from 'zod';
import type { DeviceEnrolment } from '../../protocol/hub-enrolment-api.js';
import type { HubDatabase } from '../db/open.js';

/** A device's certificate state as the API shows it (device detail, /enrolment), or null when it never enrolled here. */
export async function deviceEnrolment(hub: HubDatabase, deviceId: string): Promise<z.infer<typeof DeviceEnrolment> | null> {
  const row = await hub.db.selectFrom('enrolled_devices').selectAll().where('device_id', '=', deviceId).executeTakeFirst();
  if (!row) return null;
  const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());
  return {
    deviceId,
    state: row.state as 'active' | 'revoked' | 'released',
    certificateSerial: row.current_serial,
    certificateNotAfter: iso(row.not_after_ms),
    enrolledAt: new Date(Number(row.enrolled_at_ms)).toISOString(),
    renewedAt: iso(row.renewed_at_ms),
    revokedAt: iso(row.revoked_at_ms),
    nodeRemoval: row.node_removal,
  };
}
