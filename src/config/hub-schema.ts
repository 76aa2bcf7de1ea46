import { z } from 'zod';
import { absolutePath } from './absolute-path.js';
import { HubAlertsSection } from './hub-alerts-schema.js';
import { HubEnrolmentSection } from './hub-enrolment-schema.js';
import { HubHttpSection } from './hub-http-schema.js';

/**
 * The `hub:` section: the cloud-side service `fleetlet hub` (durable ingest into SQLite or PostgreSQL). Devices never
 * read it. Kept in its own file so that the agent's schema stays readable; schema.ts mounts it as `hub`.
 * Retention defaults are sized for 2,000 devices reporting every 30 s on a small server (see docs/operator-guide.md).
 */
const DAY = 86_400;


const postgresUrl = z
  .string()
  .max(4096)
  .refine((value) => URL.canParse(value) && ['postgres:', 'postgresql:'].includes(new URL(value).protocol), {
    error: 'expected a postgres:// URL (give the password in hub.database.passwordFile, not here)',
  });

const days = (fallback: number, what: string) => z.int().min(1).max(3650).default(fallback).describe(what);

export const HubSection = z
  .strictObject({
    database: z
      .strictObject({
        url: postgresUrl
          .optional()
          .describe('PostgreSQL to store into (postgres://user@host:5432/db); when unset, the SQLite file below.'),
        passwordFile: absolutePath.optional().describe('File holding the PostgreSQL password (mode 0600); kept out of the URL.'),
        file: absolutePath
          .default('/var/lib/fleetlet-hub/hub.db')
          .describe('The SQLite database (WAL, one file) used when no url is set.'),
        maxConnections: z.int().min(1).max(100).default(10).describe('PostgreSQL pool size.'),
      })
      .prefault({}),
    replicaId: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, { error: 'expected 1-32 of a-z 0-9 _ -' })
      .optional()
      .describe('Names this replica in its MQTT client ids (`fleetlet-hub-<replicaId>-<n>`); stable across restarts. Default: the host name.'),
    shareGroup: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/)
      .default('fleetlet-hub')
      .describe('The shared subscription group (`$share/<group>/...`) all replicas join to split the load.'),
    connections: z
      .int()
      .min(1)
      .max(64)
      .default(64)
      .describe('MQTT connections per replica; each acknowledges a message only after its commit, so they give ingest its parallelism.'),
    sessionExpirySeconds: z
      .int()
      .min(60)
      .max(90 * DAY)
      .default(7 * DAY)
      .describe('How long the broker keeps a stopped replica\'s session and queues its messages.'),
    batch: z
      .strictObject({
        maxMessages: z.int().min(1).max(10_000).default(500).describe('Messages committed together at most.'),
        maxWaitMs: z.int().min(0).max(5000).default(1).describe('How long a message may wait for others to share its commit; 0 commits at once when no commit runs (messages arriving meanwhile share the next), which makes many small commits on a busy hub.'),
      })
      .prefault({}),
    retention: z
      .strictObject({
        rawStatusDays: days(2, 'Days of raw status samples kept (2,000 devices at 30 s: about 5.8 million rows a day).'),
        fiveMinuteDays: days(14, 'Days of 5-minute status rollups kept.'),
        hourlyDays: days(400, 'Days of hourly status rollups kept.'),
        eventDays: days(90, 'Days of events kept.'),
        resultDays: days(90, 'Days of command results kept.'),
        messageIdDays: days(8, 'Days a received messageId is remembered for deduplication (beyond a device outbox\'s reach).'),
        rejectedDays: days(7, 'Days invalid messages are kept aside for inspection.'),
        rejectedMaxRows: z.int().min(10).max(10_000_000).default(10_000).describe('Invalid messages kept aside at most; the oldest go first.'),
        intervalSeconds: z.int().min(10).max(DAY).default(300).describe('Seconds between retention and rollup runs.'),
      })
      .prefault({}),
    http: HubHttpSection,
    alerts: HubAlertsSection,
    enrolment: HubEnrolmentSection,
    identityConflictWindowSeconds: z
      .int()
      .min(60)
      .max(30 * DAY)
      .default(3600)
      .describe('A device id whose inventory switches back to a machine fingerprint it showed within this window is flagged as cloned.'),
  })
  .prefault({});

export type HubConfig = z.output<typeof HubSection>;
