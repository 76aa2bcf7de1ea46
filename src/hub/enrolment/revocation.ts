import type { HubDatabase } from '../db/open.js';
import { audit } from '../auth/sessions.js';
import { writeFileAtomic } from '../../lib/files.js';
import type { CertificateIssuer } from './certificate-issuer.js';
import { EnrolmentAdminError } from './errors.js';

/**
 * Revocation: the device's certificates go on the CRL, its renewal credential stops working, and its k3s node is
 * recorded for removal (the hub holds no cluster credentials; an operator runs `kubectl delete node`). A revoked
 * device id can enrol again only after an operator releases it, and then only as a new enrolment with a token.
 */
export interface RevokedDevice {
  deviceId: string;
  certificates: number;
  /** The k3s node to delete from the cluster (the inventory's node name, else the device id). */
  nodeRemoval: string;
}

export async function revokeDevice(hub: HubDatabase, deviceId: string, actor: string, remoteAddr: string | null, now: number): Promise<RevokedDevice> {
  const enrolled = await hub.db.selectFrom('enrolled_devices').select(['state']).where('device_id', '=', deviceId).executeTakeFirst();
  if (!enrolled) throw new EnrolmentAdminError(`${deviceId} is not enrolled with this hub`);
  const inventory = await hub.db.selectFrom('devices').select(['inventory_json']).where('device_id', '=', deviceId).executeTakeFirst();
  const nodeRemoval = nodeNameOf(inventory?.inventory_json ?? null) ?? deviceId;
  const certificates = await hub.db.transaction().execute(async (tx) => {
    await tx
      .updateTable('enrolled_devices')
      .set({ state: 'revoked', renewal_hash: null, revoked_at_ms: now, node_removal: nodeRemoval })
      .where('device_id', '=', deviceId)
      .execute();
    const revoked = await tx
      .updateTable('device_certificates')
      .set({ revoked_at_ms: now })
      .where('device_id', '=', deviceId)
      .where('revoked_at_ms', 'is', null)
      .executeTakeFirst();
    return Number(revoked.numUpdatedRows);
  });
  await audit(hub, { actor, action: 'device.revoke', target: deviceId, remoteAddr, detail: { certificates, nodeRemoval } }, now);
  return { deviceId, certificates, nodeRemoval };
}

/** Lets a revoked device id enrol again (a repaired or replaced board keeping its name). */
export async function releaseDevice(hub: HubDatabase, deviceId: string, actor: string, remoteAddr: string | null, now: number): Promise<void> {
  const updated = await hub.db
    .updateTable('enrolled_devices')
    .set({ state: 'released' })
    .where('device_id', '=', deviceId)
    .where('state', '=', 'revoked')
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) === 0) throw new EnrolmentAdminError(`${deviceId} is not revoked; revoke it first (fleetlet hub device revoke)`);
  await audit(hub, { actor, action: 'device.release', target: deviceId, remoteAddr }, now);
}

/**
 * Writes the CRL of every revoked certificate not yet expired (an expired one is refused anyway) to `path`,
 * atomically, so the broker never reads half a file. Mode 0644: the broker's user reads it.
 */
export async function writeRevocationList(hub: HubDatabase, issuer: CertificateIssuer, path: string, validDays: number, now: number): Promise<number> {
  const rows = await hub.db
    .selectFrom('device_certificates')
    .select(['serial', 'revoked_at_ms'])
    .where('revoked_at_ms', 'is not', null)
    .where('not_after_ms', '>', now)
    .orderBy('serial')
    .execute();
  const pem = await issuer.revocationList(
    rows.map((r) => ({ serial: r.serial, revokedAt: new Date(Number(r.revoked_at_ms)) })),
    new Date(now),
    validDays,
  );
  await writeFileAtomic(path, pem, { mode: 0o644 });
  return rows.length;
}

function nodeNameOf(inventoryJson: string | null): string | undefined {
  if (!inventoryJson) return undefined;
  try {
    const name = (JSON.parse(inventoryJson) as { nodeName?: unknown }).nodeName;
    return typeof name === 'string' && name.length > 0 ? name : undefined;
  } catch {
    return undefined;
  }
}
