import type { Transaction } from 'kysely';
import type { EnrolResponse } from '../../protocol/enrolment.js';
import type { HubTables } from '../db/tables.js';
import { newBearerSecret, secretHash } from '../auth/secrets.js';
import type { CertificateIssuer } from './certificate-issuer.js';
import type { CheckedCsr } from './csr-check.js';

/**
 * Issues a certificate for a checked CSR and records it: the certificate (for the CRL and expiry alerts), the
 * device's key and a new renewal credential (only its sha256 kept; the previous one stops working).
 */
export async function issueAndRecord(
  tx: Transaction<HubTables>,
  issuer: CertificateIssuer,
  request: { deviceId: string; checked: CheckedCsr; lifetimeDays: number },
  now: number,
): Promise<Extract<EnrolResponse, { status: 'issued' }>> {
  const { deviceId, checked } = request;
  const issued = await issuer.issue({ deviceId, csr: checked.csr, lifetimeDays: request.lifetimeDays, now: new Date(now) });
  const renewalCredential = newBearerSecret('flr_');
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
  const current = {
    state: 'active',
    public_key_sha256: checked.publicKeySha256,
    renewal_hash: secretHash(renewalCredential),
    current_serial: issued.serial,
    not_after_ms: issued.notAfter.getTime(),
  };
  const existing = await tx.selectFrom('enrolled_devices').select(['state']).where('device_id', '=', deviceId).executeTakeFirst();
  if (existing?.state === 'active') {
    await tx.updateTable('enrolled_devices').set({ ...current, renewed_at_ms: now }).where('device_id', '=', deviceId).execute();
  } else {
    // First enrolment, or again after an operator released a revoked device: a fresh record.
    await tx.deleteFrom('enrolled_devices').where('device_id', '=', deviceId).execute();
    await tx
      .insertInto('enrolled_devices')
      .values({ device_id: deviceId, ...current, enrolled_at_ms: now, renewed_at_ms: null, revoked_at_ms: null, node_removal: null })
      .execute();
  }
  return {
    status: 'issued',
    deviceId,
    certificatePem: issued.certificatePem,
    caPem: issuer.caPem,
    notAfter: issued.notAfter.toISOString(),
    renewalCredential,
  };
}
