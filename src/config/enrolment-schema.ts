import { join } from 'node:path';
import { z } from 'zod';
import { absolutePath } from './absolute-path.js';
import { hasControlCharacter } from '../lib/control-characters.js';

/**
 * The `enrolment:` section: zero-touch enrolment with the hub acting as the fleet's CA. A device holds only a
 * bootstrap token and the fleet's CA at first boot; it makes its own key, asks the hub for a certificate whose
 * common name is its id, and renews it before it expires. Kept in its own file; schema.ts mounts it as `enrolment`.
 */

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

const hubUrl = z
  .string()
  .max(2048)
  .refine((value) => !hasControlCharacter(value) && URL.canParse(value) && ['https:', 'http:'].includes(new URL(value).protocol), {
    error: 'expected an https:// URL of the hub',
  });

/** The bootstrap token crosses to the hub in a header: over plain http only on this machine, and only when asked. */
function refusePlainHttpHub(section: { hubUrl?: string | undefined; allowInsecureLoopback: boolean }, context: z.RefinementCtx): void {
  if (!section.hubUrl || new URL(section.hubUrl).protocol === 'https:') return;
  if (section.allowInsecureLoopback && LOOPBACK_HOSTS.has(new URL(section.hubUrl).hostname)) return;
  context.addIssue({
    code: 'custom',
    path: ['hubUrl'],
    input: section.hubUrl,
    message: 'expected an https:// URL (the bootstrap token and the certificate cross it); http:// only on loopback with enrolment.allowInsecureLoopback: true',
  });
}

export const EnrolmentSection = z
  .strictObject({
    hubUrl: hubUrl
      .optional()
      .describe('The hub that issues this device its client certificate (https://hub.example.net); when set, the device enrols at first boot and renews before expiry.'),
    allowInsecureLoopback: z
      .boolean()
      .default(false)
      .describe('Allow an http:// hubUrl on 127.0.0.1 or localhost (tests, a hub on the same machine); never over a network.'),
    bootstrapTokenFile: absolutePath
      .optional()
      .describe('File holding the fleet\'s bootstrap (enrolment) token (mode 0600); it can do nothing but enrol.'),
    caFile: absolutePath
      .optional()
      .describe('The fleet CA (PEM): it signs the device certificates, and the hub\'s HTTPS certificate unless hubCaFile names another. Default: broker.tls.caFile.'),
    hubCaFile: absolutePath.optional().describe('The CA of the hub\'s HTTPS certificate, when another than caFile.'),
    dir: absolutePath
      .optional()
      .describe('Where the device key, its certificate and the renewal credential are kept (mode 0700, files 0600). Default: <stateDir>/enrolment.'),
    renewAt: z
      .number()
      .min(0.05)
      .max(0.95)
      .default(2 / 3)
      .describe('Share of the certificate\'s lifetime after which it is renewed (2/3: a 30-day certificate is renewed after 20 days).'),
    refusedRetrySeconds: z
      .int()
      .min(10)
      .max(86_400)
      .default(900)
      .describe('How long to wait after the hub refused enrolment before asking again (the operator may approve it or issue a new token).'),
  })
  .superRefine(refusePlainHttpHub)
  .prefault({});

export type EnrolmentConfig = z.output<typeof EnrolmentSection>;

/** Where the enrolled key and certificate live: `current` is a link to the generation in use, switched atomically. */
export function enrolmentFiles(stateDir: string, section: EnrolmentConfig): { dir: string; certFile: string; keyFile: string } {
  const dir = section.dir ?? join(stateDir, 'enrolment');
  return { dir, certFile: join(dir, 'current', 'device.pem'), keyFile: join(dir, 'current', 'device.key') };
}

/**
 * The broker TLS section as the agent uses it: with enrolment configured, the client certificate and key default to
 * the enrolled files, and the fleet CA to enrolment.caFile.
 */
export function withEnrolledTls<T extends { tls: { caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined } }>(
  broker: T,
  stateDir: string,
  section: EnrolmentConfig,
): T {
  if (!section.hubUrl) return broker;
  const files = enrolmentFiles(stateDir, section);
  return {
    ...broker,
    tls: {
      ...broker.tls,
      caFile: broker.tls.caFile ?? section.caFile,
      certFile: broker.tls.certFile ?? files.certFile,
      keyFile: broker.tls.keyFile ?? files.keyFile,
    },
  };
}
