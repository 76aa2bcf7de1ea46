import { z } from 'zod';

/**
 * The operator's enrolment routes of the hub API (the device's own are in enrolment.ts): the pending list,
 * approve/deny and revocation, operator role only; a device's certificate state (DeviceEnrolment) is part of its detail.
 */
const isoTime = z.iso.datetime();

export const ENROLMENT_STATUSES = ['pending', 'approved', 'denied', 'issued'] as const;

export const EnrolmentListQuery = z.strictObject({
  status: z.enum(ENROLMENT_STATUSES).optional().describe('only requests in this state (the pending list: status=pending)'),
});

export const EnrolmentRequestItem = z.object({
  id: z.int(),
  deviceId: z.string(),
  status: z.enum(ENROLMENT_STATUSES),
  tokenName: z.string().nullable(),
  fingerprint: z.string().nullable(),
  remoteAddr: z.string().nullable(),
  createdAt: isoTime,
  decidedAt: isoTime.nullable(),
  decidedBy: z.string().nullable(),
});
export const EnrolmentList = z.object({ enrolments: z.array(EnrolmentRequestItem) });

export const DeviceEnrolment = z.object({
  deviceId: z.string(),
  state: z.enum(['active', 'revoked', 'released']),
  certificateSerial: z.string().nullable(),
  certificateNotAfter: isoTime.nullable(),
  enrolledAt: isoTime,
  renewedAt: isoTime.nullable(),
  revokedAt: isoTime.nullable(),
  /** The k3s node reported for removal when the device was revoked: `kubectl delete node <name>`. */
  nodeRemoval: z.string().nullable(),
});

export const RevokeResult = z.object({
  deviceId: z.string(),
  certificates: z.int(),
  nodeRemoval: z.string(),
  crlEntries: z.int(),
});
