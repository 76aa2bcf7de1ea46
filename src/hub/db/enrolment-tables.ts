import type { Generated } from 'kysely';

/** The tables of the fleet CA's enrolment, part of HubTables (tables.ts), same conventions. */

/** Bootstrap tokens: each may enrol `max_uses` devices until it expires or is revoked; only its sha256 is stored. */
export interface EnrolTokensTable {
  id: Generated<number>;
  name: string;
  token_hash: string;
  max_uses: number;
  uses: number;
  auto_approve: number;
  created_at_ms: number;
  expires_at_ms: number;
  revoked: number;
}

/** One enrolment of a device id with one key: 'pending' (the operator's list), 'approved', 'denied' or 'issued'. */
export interface EnrolmentRequestsTable {
  id: Generated<number>;
  device_id: string;
  token_id: number;
  public_key_sha256: string;
  fingerprint: string | null;
  remote_addr: string | null;
  status: string;
  created_at_ms: number;
  decided_at_ms: number | null;
  decided_by: string | null;
}

/** Every certificate the CA issued (serial as hex): the CRL lists the revoked ones. */
export interface DeviceCertificatesTable {
  serial: string;
  device_id: string;
  public_key_sha256: string;
  not_before_ms: number;
  not_after_ms: number;
  issued_at_ms: number;
  revoked_at_ms: number | null;
}

/** One row per enrolled device: 'active', 'revoked' (refused everywhere) or 'released' (may enrol again with a new key). */
export interface EnrolledDevicesTable {
  device_id: string;
  state: string;
  public_key_sha256: string;
  renewal_hash: string | null;
  current_serial: string | null;
  not_after_ms: number | null;
  enrolled_at_ms: number;
  renewed_at_ms: number | null;
  revoked_at_ms: number | null;
  /** The k3s node name reported for removal from the cluster when the device was revoked. */
  node_removal: string | null;
}
