import type { Transaction } from 'kysely';
import type { EnrolResponse } from '../../protocol/enrolment.js';
import type { HubTables } from '../db/tables.js';
import { newBearerSecret, secretHash } from '../auth/secrets.js';
import type { CertificateIssuer } from './certificate-issuer.js';
import type { CheckedCsr } from './csr-check.js';

export type Issued = Extract<EnrolResponse, { status: 'issued' }>;

/**
 * Binds the device id to the CSR's key, then issues a certificate and records it: the certificate (for the CRL and
 * expiry alerts) and a new renewal credential (only its sha256 kept; the previous one stops working). Only a renewal
 * (`mayChangeKey`) moves an enrolled device id to another key. The binding is a conditional write made before
 * anything is signed, so of two enrolments of one id with different keys racing each other only one gets it (the
 * other's insert fails on the primary key; the caller turns that into a refusal).
 */
export async function issueAndRecord(
  tx: Transaction<HubTables>,
  issuer: CertificateIssuer,
  request: { deviceId: string; checked: CheckedCsr; lifetimeDays: number; mayChangeKey: boolean },
  now: number,
): Promise<Issued | { refused: string }> {
  const { deviceId, checked } = request;
  const renewalCredential = newBearerSecret('flr_');
  const binding = { state: 'active', public_key_sha256: checked.publicKeySha256, renewal_hash: secretHash(renewalCredential) };
  const existing = await tx.selectFrom('enrolled_devices').select(['state']).where('device_id', '=', deviceId).executeTakeFirst();
  if (existing?.state === 'active') {
    let update = tx.updateTable('enrolled_devices').set({ ...binding, renewed_at_ms: now }).where('device_id', '=', deviceId).where('state', '=', 'active');
    if (!request.mayChangeKey) update = update.where('public_key_sha256', '=', checked.publicKeySha256);
    const updated = await update.executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0) return { refused: `${deviceId} is enrolled with another key` };
  } else if (existing?.state === 'revoked') {
    return { refused: `${deviceId} was revoked` };
  } else {
    // First enrolment, or again after an operator released a revoked device: a fresh record.
    await tx.deleteFrom('enrolled_devices').where('device_id', '=', deviceId).where('state', '=', 'released').execute();
    await tx
      .insertInto('enrolled_devices')
      .values({ device_id: deviceId, ...binding, enrolled_at_ms: now, renewed_at_ms: null, revoked_at_ms: null, node_removal: null })
      .execute();
  }

  const issued = await issuer.issue({ deviceId, csr: checked.csr, lifetimeDays: request.lifetimeDays, now: new Date(now) });
  await tx
    .insertInto('device_certificates')
    .values({
      serial: issued.serial,
      device_id: deviceId,
      public_key_sha256: checked.publicKeySha256,
      not_before_ms: issued.notBefore.getTime(),
      not_after_ms: issued.notAfter.getTime(),
      issued_at_ms: now,
      revoked_at_ms: null,
    })
    .execute();
  await tx
    .updateTable('enrolled_devices')
    .set({ current_serial: issued.serial, not_after_ms: issued.notAfter.getTime() })
    .where('device_id', '=', deviceId)
    .execute();
  return {
    status: 'issued',
    deviceId,
    certificatePem: issued.certificatePem,
    caPem: issuer.caPem,
    notAfter: issued.notAfter.toISOString(),
    renewalCredential,
  };
}
