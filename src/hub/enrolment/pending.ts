import type { HubDatabase } from '../db/open.js';
import { audit } from '../auth/sessions.js';
import { EnrolmentAdminError } from './errors.js';

/** The operator's side of enrolment: the requests (pending first), and approving or denying one. */
export interface EnrolmentRequestInfo {
  id: number;
  deviceId: string;
  status: string;
  tokenName: string | null;
  fingerprint: string | null;
  remoteAddr: string | null;
  createdAtMs: number;
  decidedAtMs: number | null;
  decidedBy: string | null;
}

export async function listEnrolmentRequests(hub: HubDatabase, options: { status?: string; limit?: number } = {}): Promise<EnrolmentRequestInfo[]> {
  let query = hub.db
    .selectFrom('enrolment_requests')
    .leftJoin('enrol_tokens', 'enrol_tokens.id', 'enrolment_requests.token_id')
    .select([
      'enrolment_requests.id',
      'enrolment_requests.device_id',
      'enrolment_requests.status',
      'enrol_tokens.name as token_name',
      'enrolment_requests.fingerprint',
      'enrolment_requests.remote_addr',
      'enrolment_requests.created_at_ms',
      'enrolment_requests.decided_at_ms',
      'enrolment_requests.decided_by',
    ])
    .orderBy('enrolment_requests.id', 'desc')
    .limit(options.limit ?? 500);
  if (options.status) query = query.where('enrolment_requests.status', '=', options.status);
  const rows = await query.execute();
  return rows.map((r) => ({
    id: Number(r.id),
    deviceId: r.device_id,
    status: r.status,
    tokenName: r.token_name ?? null,
    fingerprint: r.fingerprint,
    remoteAddr: r.remote_addr,
    createdAtMs: Number(r.created_at_ms),
    decidedAtMs: r.decided_at_ms === null ? null : Number(r.decided_at_ms),
    decidedBy: r.decided_by,
  }));
}

/** Approves or denies a pending request; the device gets its certificate (or the refusal) when it asks next. */
export async function decideEnrolment(
  hub: HubDatabase,
  id: number,
  decision: 'approve' | 'deny',
  actor: string,
  remoteAddr: string | null,
  now: number,
): Promise<EnrolmentRequestInfo> {
  const row = await hub.db.selectFrom('enrolment_requests').select(['device_id', 'status']).where('id', '=', id).executeTakeFirst();
  if (!row) throw new EnrolmentAdminError(`no enrolment request ${id} (see: fleetlet hub enrolment list)`);
  if (row.status !== 'pending') throw new EnrolmentAdminError(`enrolment request ${id} is ${row.status}, not pending`);
  await hub.db
    .updateTable('enrolment_requests')
    .set({ status: decision === 'approve' ? 'approved' : 'denied', decided_at_ms: now, decided_by: actor })
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .execute();
  await audit(hub, { actor, action: `enrolment.${decision}`, target: row.device_id, remoteAddr, detail: { request: id } }, now);
  return (await listEnrolmentRequests(hub)).find((r) => r.id === id)!;
}
