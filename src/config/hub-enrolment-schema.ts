import { z } from 'zod';
import { absolutePath } from './absolute-path.js';

/**
 * `hub.enrolment`: the hub as the fleet's certificate authority. Devices enrol over the hub's HTTPS API with a
 * bootstrap token and get a short-lived client certificate (CN = device id) for the broker's device listener.
 * Enrolment is off until caCertFile and caKeyFile are set (`fleetlet hub ca init` writes both).
 */

export const HubEnrolmentSection = z
  .strictObject({
    caCertFile: absolutePath.optional().describe('PEM certificate of the fleet CA that signs device certificates; the broker trusts it (cafile).'),
    caKeyFile: absolutePath
      .optional()
      .describe('PEM PKCS#8 private key (ECDSA P-256) of caCertFile, mode 0600; read by the hub only.'),
    certificateDays: z
      .number()
      .min(0.0001)
      .max(397)
      .default(30)
      .describe('Lifetime of a device certificate in days; devices renew at two thirds of it. Fractions make it short (0.25: 6 hours; 0.00025: about 22 s, for tests).'),
    approval: z
      .enum(['manual', 'auto'])
      .default('manual')
      .describe('Whether a new bootstrap token issues at once (auto) or puts devices on the pending list for an operator (manual); `enrol-token create --auto-approve` overrides it per token.'),
    crlPath: absolutePath
      .default('/var/lib/fleetlet-hub/fleet-crl.pem')
      .describe('Where the hub writes the certificate revocation list (PEM, signed by the CA) that the broker reads (its crlfile); not `*File`, since the hub creates it.'),
    crlDays: z
      .int()
      .min(1)
      .max(90)
      .default(7)
      .describe('Validity of each CRL the hub writes; it writes a fresh one at start and every 6 hours, since the broker refuses every device once its CRL expired.'),
    disconnectAfterRevokeSeconds: z
      .int()
      .min(0)
      .max(3600)
      .default(10)
      .describe("Seconds after a revocation at which the hub ends the device's open broker connection (it takes over the device's client id on its own broker connection); the broker must have reread the CRL by then. 0: never."),
    pendingRetrySeconds: z.int().min(1).max(86_400).default(60).describe('How long a pending device waits before it asks again.'),
    maxFailures: z
      .int()
      .min(1)
      .max(100_000)
      .default(20)
      .describe('Refused enrolment attempts per token, and 4 times this per address, within windowSeconds before further attempts are refused (429).'),
    windowSeconds: z.int().min(10).max(86_400).default(900).describe('The window refused enrolment attempts are counted in.'),
  })
  .refine((e) => (e.caCertFile === undefined) === (e.caKeyFile === undefined), { error: 'give caCertFile and caKeyFile together' })
  .prefault({});

export type HubEnrolmentConfig = z.output<typeof HubEnrolmentSection>;
