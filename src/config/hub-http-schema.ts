import { z } from 'zod';
import { absolutePath } from './absolute-path.js';

/**
 * `hub.http`: the hub's HTTP API (devices, history, events, results, the live stream, /metrics) and its logins.
 * Loopback by default: exposing it is a decision (`listen: 0.0.0.0:8443` with TLS).
 */

const listenAddress = z
  .string()
  .max(300)
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { error: 'expected host:port, e.g. 127.0.0.1:8080 or [::1]:8080' })
  .refine((value) => Number(value.slice(value.lastIndexOf(':') + 1)) <= 65_535, { error: 'port above 65535' });

export const HubHttpSection = z
  .strictObject({
    listen: listenAddress
      .default('127.0.0.1:8080')
      .describe('Address of the HTTP API (host:port); loopback unless told otherwise. Port 0 picks a free one.'),
    tlsCertFile: absolutePath.optional().describe('PEM certificate chain; with tlsKeyFile the API is served over HTTPS only.'),
    tlsKeyFile: absolutePath.optional().describe('PEM private key of tlsCertFile (mode 0600).'),
    publicOrigin: z
      .url()
      .max(300)
      .optional()
      .describe('The origin browsers use for the hub (https://hub.example.net) when a proxy sits in front; mutations from another Origin are refused. Default: the request\'s own.'),
    sessionHours: z.int().min(1).max(24 * 30).default(12).describe('Hours a login session lasts.'),
    loginMaxFailures: z
      .int()
      .min(1)
      .max(1000)
      .default(5)
      .describe('Failed logins per account, and 4 times this per address, within loginWindowSeconds before further logins are refused.'),
    loginWindowSeconds: z.int().min(10).max(86_400).default(900).describe('The window failed logins are counted in.'),
  })
  .refine((http) => (http.tlsCertFile === undefined) === (http.tlsKeyFile === undefined), {
    error: 'give tlsCertFile and tlsKeyFile together',
  })
  .prefault({});

export type HubHttpConfig = z.output<typeof HubHttpSection>;
