import { z } from 'zod';
import { DeviceIdSchema } from './ids.js';

/**
 * Enrolment over the hub's HTTPS API: the contract between a device (src/identity, src/link) and the hub acting as
 * the fleet's CA (src/hub/enrolment). A device holds only a bootstrap token and the fleet's CA at first boot; it
 * makes its own key pair, sends a certificate signing request with `CN=<device id>`, and gets a short-lived
 * certificate plus a renewal credential. The bootstrap token can do nothing but this; the renewal credential only
 * renews (or re-enrols) its own device.
 *
 * - `POST /api/v1/enrol`, `Authorization: Bearer <bootstrap token>`, body EnrolRequest -> EnrolResponse
 *   (200 issued, 202 pending an operator's approval: poll again after `retryAfterSeconds`; 403 refused).
 * - `POST /api/v1/enrol/renew`, `Authorization: Bearer <renewal credential>`, body EnrolRequest -> EnrolResponse.
 */
const MAX_PEM = 16 * 1024;
const pem = (label: string) =>
  z
    .string()
    .max(MAX_PEM)
    .refine((text) => text.includes(`-----BEGIN ${label}-----`), { error: `expected a PEM ${label}` });

export const ENROLMENT_SCHEMA_VERSION = 1;
export const ENROL_PATH = '/api/v1/enrol';
export const RENEW_PATH = '/api/v1/enrol/renew';

export const EnrolRequest = z.strictObject({
  schemaVersion: z.literal(ENROLMENT_SCHEMA_VERSION),
  deviceId: DeviceIdSchema,
  /** PKCS#10, subject `CN=<deviceId>`, signed by the device's new key (proof that it holds the key). */
  csrPem: pem('CERTIFICATE REQUEST'),
  /** The machine fingerprint the device reports in its inventory, so the hub can show a clone. */
  fingerprint: z.string().max(128).optional(),
});
export type EnrolRequest = z.infer<typeof EnrolRequest>;

export const EnrolResponse = z.discriminatedUnion('status', [
  z.strictObject({
    status: z.literal('issued'),
    deviceId: DeviceIdSchema,
    certificatePem: pem('CERTIFICATE'),
    /** The CA chain the certificate chains to (the fleet's CA). */
    caPem: pem('CERTIFICATE'),
    notAfter: z.iso.datetime(),
    /** Replaces the previous one; kept 0600 on the device and used for the next renewal. */
    renewalCredential: z.string().min(32).max(256),
  }),
  z.strictObject({ status: z.literal('pending'), deviceId: DeviceIdSchema, retryAfterSeconds: z.int().min(1).max(86_400) }),
  z.strictObject({ status: z.literal('refused'), reason: z.string().max(500) }),
]);
export type EnrolResponse = z.infer<typeof EnrolResponse>;
