import { z } from 'zod';
import { absolutePath } from './absolute-path.js';
import { hasControlCharacter } from '../lib/control-characters.js';
import { Secret } from '../lib/secret.js';
import { LOG_LEVELS } from '../lib/logger.js';
import { isPlaintextBrokerUrl } from '../protocol/broker-url.js';
import { DeviceIdSchema, GroupIdSchema } from '../protocol/ids.js';
import { LabelsSchema, TaintSchema } from '../protocol/node-labels.js';
import { OUTBOX_CLASSES, type OutboxClass } from '../protocol/outbox-classes.js';
import { K3sVersionSchema } from '../protocol/version-patterns.js';
import { HubSection } from './hub-schema.js';
import { EnrolmentSection } from './enrolment-schema.js';

/**
 * The one source of truth for fleetlet's configuration: types, defaults, JSON Schema, env var names and the
 * README reference are all derived from this schema. Later capabilities add keys here, nowhere else.
 */

const withoutControlCharacters = (value: string) => !hasControlCharacter(value);
const NO_CONTROL_CHARACTERS = { error: 'expected no control characters (C0, DEL or C1: a NUL, tab, newline, escape...)' };

const secretString = z
  .string()
  .min(1, { error: 'expected a non-empty secret' })
  .max(4096, { error: 'expected a secret of at most 4096 characters' })
  .refine(withoutControlCharacters, NO_CONTROL_CHARACTERS)
  .transform((value) => new Secret(value));


const urlWithScheme = (schemes: string[], hint: string) =>
  z.string().refine(withoutControlCharacters, { ...NO_CONTROL_CHARACTERS, abort: true }).refine(
    (value) => {
      try {
        const url = new URL(value);
        return schemes.includes(url.protocol) && url.hostname !== '';
      } catch {
        return false;
      }
    },
    { error: `expected ${hint}` },
  );

const TopicRoot = z
  .string()
  .regex(/^[A-Za-z0-9_-]+(?:\/[A-Za-z0-9_-]+)*$/, {
    error: 'expected topic levels of A-Z a-z 0-9 _ - separated by "/" (no wildcards, no leading or trailing "/")',
  });

const port = z.int().min(1).max(65535);

const DeviceSection = z
  .strictObject({
    id: DeviceIdSchema.optional().describe(
      'Device id; when unset it is derived from /etc/machine-id or the board serial at the first start and kept from then on.',
    ),
    name: z.string().min(1).max(128).optional().describe('Human-friendly name shown to operators.'),
    labels: LabelsSchema.default({}).describe('Labels for selecting devices in rollouts (Kubernetes label syntax).'),
    groups: z.array(GroupIdSchema).max(32).default([]).describe("Groups whose command topics the device subscribes to; the broker delivers only those the fleet's membership list grants it (`fleetlet fleet acl`)."),
    identityRoot: absolutePath
      .default('/')
      .describe('Root under which the machine id, board serial, DMI product uuid and network cards are read; "/" unless the host is mounted elsewhere (a container).'),
  })
  .prefault({});

/** Over plain mqtt:// reports, commands and the MQTT password cross the network readable: only by name. */
function refusePlaintextBroker(broker: { url: string; allowPlaintext: boolean }, context: z.RefinementCtx): void {
  if (broker.allowPlaintext || !isPlaintextBrokerUrl(broker.url)) return;
  context.addIssue({
    code: 'custom',
    path: ['url'],
    input: broker.url,
    message: 'plain mqtt:// sends everything unencrypted; use mqtts://, or set broker.allowPlaintext: true',
  });
}

const BrokerSection = z.strictObject({
  url: urlWithScheme(['mqtt:', 'mqtts:'], 'an mqtt:// or mqtts:// URL with a host').describe(
    'Broker URL, mqtts://host:8883 (TLS) or mqtt://host:1883 (needs allowPlaintext).',
  ),
  allowPlaintext: z.boolean().default(false).describe('Allow an unencrypted mqtt:// URL (a warning is logged).'),
  topicRoot: TopicRoot.default('fleetlet/v1').describe('Prefix of every topic.'),
  keepaliveSeconds: z.int().min(5).max(3600).default(30).describe('MQTT keepalive; a dead link is detected within 1.5x.'),
  inflightWindow: z.int().min(1).max(1000).default(200).describe('QoS 1 messages in flight at once while draining.'),
  tls: z
    .strictObject({
      caFile: absolutePath.optional().describe('CA bundle that signed the broker certificate.'),
      certFile: absolutePath.optional().describe('Client certificate (mutual TLS).'),
      keyFile: absolutePath.optional().describe('Client private key (secret file, mode 0600).'),
      serverName: z.string().min(1).max(253).optional().describe('Name to check the broker certificate against.'),
    })
    .prefault({}),
  auth: z
    .strictObject({
      username: z.string().min(1).max(256).optional(),
      password: secretString.optional().describe('Prefer passwordFile.'),
      passwordFile: absolutePath.optional().describe('File holding the MQTT password (mode 0600).'),
    })
    .prefault({}),
  reconnect: z
    .strictObject({
      baseMs: z.int().min(100).max(60_000).default(1000).describe('Longest wait before the first reconnect attempt; each wait is drawn at random (full jitter).'),
      capMs: z
        .int()
        .min(1000)
        .max(3_600_000)
        .default(300_000)
        .describe('Longest wait between reconnect attempts; a wait is also at most half as long as the broker has been away, so a short outage costs a short wait.'),
      stableMs: z.int().min(1000).max(3_600_000).default(60_000).describe('A connection up this long resets the backoff.'),
    })
    .prefault({}),
}).superRefine(refusePlaintextBroker);

/**
 * The k3s binary runs as root, and the channel decides which version is fetched: over plain http anyone on the
 * path chooses what runs. A loopback or air-gap mirror without TLS has to be allowed by name.
 */
function refusePlainHttpMirrors(
  k3s: { channelUrl: string; artifactUrl: string; allowInsecureMirror: boolean },
  context: z.RefinementCtx,
): void {
  if (k3s.allowInsecureMirror) return;
  for (const key of ['channelUrl', 'artifactUrl'] as const) {
    if (!isPlainHttp(k3s[key])) continue;
    context.addIssue({
      code: 'custom',
      path: [key],
      input: k3s[key],
      message: 'expected an https:// URL (the k3s it names runs as root); for a mirror without TLS set k3s.allowInsecureMirror: true',
    });
  }
}

// URL.parse is newer than the armv7 runtime (Node 20.11); canParse is not.
export function isPlainHttp(url: string): boolean {
  return URL.canParse(url) && new URL(url).protocol === 'http:';
}

const K3sSection = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Install and supervise `k3s agent`.'),
    serverUrl: urlWithScheme(['https:'], 'an https:// URL (k3s only supports https)').optional(),
    token: secretString
      .optional()
      .describe('Join token: the agent token or a bootstrap token, never the server token; prefer tokenFile. k3s reads it from a 0600 file fleetlet writes (--token-file), never from its command line or environment.'),
    tokenFile: absolutePath.optional().describe('File holding the join token (mode 0600).'),
    version: K3sVersionSchema.optional()
      .describe('Pinned k3s version; when unset the channel decides.'),
    channel: z.string().regex(/^[a-z0-9.-]+$/).default('stable'),
    channelUrl: urlWithScheme(['https:', 'http:'], 'an http(s):// URL')
      .default('https://update.k3s.io/v1-release/channels')
      .describe('Where the channel names the k3s version to install; https unless allowInsecureMirror.'),
    artifactUrl: urlWithScheme(['https:', 'http:'], 'an http(s):// URL')
      .default('https://github.com/k3s-io/k3s/releases/download')
      .describe('Base URL of release artifacts; point it at a mirror for fleets. https unless allowInsecureMirror.'),
    allowInsecureMirror: z
      .boolean()
      .default(false)
      .describe('Allow http:// for channelUrl and artifactUrl (a warning is logged): whoever sits on that path picks the k3s that runs as root.'),
    binaryPath: absolutePath.default('/usr/local/bin/k3s'),
    dataDir: absolutePath.default('/var/lib/rancher/k3s'),
    nodeName: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/, { error: 'expected a DNS-1123 node name' }).optional(),
    withNodeId: z.boolean().default(false),
    nodeLabels: LabelsSchema.default({}).describe('Labels of the k3s node (Kubernetes label syntax, as k3s.configure takes them).'),
    nodeTaints: z
      .array(TaintSchema)
      .default([])
      .describe('Taints of the k3s node, key[=value]:Effect with key and value in label syntax (as k3s.configure and the kubelet take them).'),
    nodeIp: z.array(z.union([z.ipv4(), z.ipv6()])).default([]),
    nodeExternalIp: z.array(z.union([z.ipv4(), z.ipv6()])).default([]),
    disableApiserverLb: z.boolean().default(false),
    lbServerPort: port.default(6444),
    kubeletArgs: z.array(z.string().min(1).max(1024)).default([]),
    extraArgs: z.array(z.string().min(1).max(1024)).default([]).describe('Further `k3s agent` flags, checked against its flag list.'),
    passEnv: z
      .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\*?$/, { error: 'expected a variable name, or a prefix ending in "*"' }))
      .max(64)
      .default([])
      .describe(
        'Further variables of fleetlet\'s environment k3s gets (a trailing * matches a prefix), beyond PATH, HOME, LANG, LC_*, TZ and the proxy variables. FLEETLET_*, K3S_*, NOTIFY_SOCKET and WATCHDOG_* are never passed.',
      ),
    nodeConfigDir: absolutePath
      .default('/etc/rancher/node')
      .describe('Where k3s keeps the node password and id; only rootless k3s uses another (<dataDir>/agent/etc/rancher/node).'),
  })
  .superRefine(refusePlainHttpMirrors)
  .prefault({});

/** Rows and payload bytes one class of the outbox may hold; beyond either, its oldest records are dropped (and counted). */
const OutboxBudget = (rows: number, bytes: number) =>
  z.strictObject({ maxRows: z.int().min(10).default(rows), maxBytes: z.int().min(1024).default(bytes) }).prefault({});

// Sized for a Pi with a small SD card: about 24 MiB for everything at worst.
const OUTBOX_BUDGET_DEFAULTS: Record<OutboxClass, [rows: number, bytes: number]> = {
  status: [20_000, 8 * 1024 * 1024],
  event: [20_000, 8 * 1024 * 1024],
  result: [10_000, 8 * 1024 * 1024],
};
/** One budget per outbox class, in the shedding order, so that a new class cannot go without one. */
const outboxBudgets = Object.fromEntries(OUTBOX_CLASSES.map((cls) => [cls, OutboxBudget(...OUTBOX_BUDGET_DEFAULTS[cls])])) as Record<
  OutboxClass,
  ReturnType<typeof OutboxBudget>
>;

const LimitsSection = z
  .strictObject({
    outbox: z
      .strictObject({
        ...outboxBudgets,
        maxTotalBytes: z
          .int()
          .min(4096)
          .default(16 * 1024 * 1024)
          .describe('Over this, the oldest records are shed cheapest class first: status, then events, then results.'),
      })
      .prefault({}),
    maxMessageBytes: z.int().min(1024).max(16 * 1024 * 1024).default(256 * 1024).describe('Largest MQTT payload accepted.'),
    eventLog: z
      .strictObject({
        maxRows: z.int().min(10).default(2000).describe('Entries the local event log keeps at most; the oldest go first.'),
        maxBytes: z
          .int()
          .min(4096)
          .default(2 * 1024 * 1024)
          .describe('Bytes (kind and detail) the local event log keeps at most; the oldest entries go first.'),
      })
      .prefault({}),
  })
  .prefault({});

/** An operator's Ed25519 public key: the raw 32 bytes in base64 (what `fleetlet fleet keygen` prints). */
const Ed25519PublicKey = z
  .string()
  .regex(/^[A-Za-z0-9+/]{43}=$/, { error: 'expected an Ed25519 public key: 32 bytes in base64 (44 characters)' });

const CommandsSection = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Accept signed commands from operators.'),
    trustedKeys: z
      .array(
        z.strictObject({
          id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'expected a key id: 1-64 of A-Z a-z 0-9 . _ -' }),
          publicKey: Ed25519PublicKey,
          revoked: z.boolean().default(false).describe('A revoked key stays listed so that its commands are refused by name.'),
        }),
      )
      .max(32)
      .default([])
      .describe('Operator keys trusted, unscoped, while the device holds no trust document (see trustRoot); several at once allow rotation.'),
    trustRoot: Ed25519PublicKey.optional().describe(
      'Public key of the fleet root (`fleetlet fleet trust init`): it signs the trust document (scoped operator keys, release keys, revocations) that trust.update delivers; once one is held, trustedKeys no longer count.',
    ),
    clockSkewSeconds: z.int().min(0).max(86_400).default(300).describe('Allowance for clocks that disagree.'),
    maxLifetimeSeconds: z
      .int()
      .min(60)
      .max(30 * 86_400)
      .default(7 * 86_400)
      .describe('Longest validity a command may ask for; bounds how long the replay journal keeps entries.'),
    maxCommandBytes: z.int().min(1024).max(1024 * 1024).default(64 * 1024).describe('Largest command envelope accepted.'),
    maxRejectionsPerMinute: z
      .int()
      .min(1)
      .max(10_000)
      .default(60)
      .describe('Refusals reported per minute at most; a flood of bad commands cannot crowd real results out of the outbox.'),
    downloadIdleTimeoutSeconds: z
      .int()
      .min(1)
      .max(3600)
      .default(60)
      .describe('A command download that receives no byte for this long fails; it never holds the command queue longer.'),
    k3sUpgrade: z
      .strictObject({
        healthTimeoutSeconds: z.int().min(10).max(3600).default(300).describe('How long a new k3s has to become healthy.'),
        minFreeBytes: z.int().min(0).default(512 * 1024 * 1024).describe('Free space needed beside the k3s binary.'),
        maxArtifactBytes: z.int().min(1024).default(512 * 1024 * 1024).describe('Largest k3s binary a k3s.upgrade downloads.'),
      })
      .prefault({}),
    agentUpgrade: z
      .strictObject({
        binaryPath: absolutePath.default('/usr/local/bin/fleetlet').describe('The fleetlet executable to replace.'),
        confirmTimeoutSeconds: z
          .int()
          .min(10)
          .max(3600)
          .default(120)
          .describe('How long a new fleetlet has to prove itself healthy (commands subscribed and verified, telemetry sampled, a database write) before it is reverted.'),
        maxArtifactBytes: z.int().min(1024).default(256 * 1024 * 1024).describe('Largest fleetlet binary an agent.upgrade downloads.'),
        minFreeBytes: z
          .int()
          .min(0)
          .default(256 * 1024 * 1024)
          .describe('Free space needed beside the fleetlet binary before an agent.upgrade downloads.'),
      })
      .prefault({}),
  })
  .prefault({});

export const ConfigSchema = z.strictObject({
  device: DeviceSection,
  broker: BrokerSection,
  k3s: K3sSection,
  stateDir: absolutePath.default('/var/lib/fleetlet').describe('Where the state database lives.'),
  runtimeDir: absolutePath
    .default('/run/fleetlet')
    .describe(
      'A directory in RAM (tmpfs) where status samples wait before they reach the state database: while the link is up they never do, sparing the SD card. When it is not tmpfs, every sample is written to the database.',
    ),
  telemetry: z
    .strictObject({
      intervalSeconds: z
        .int()
        .min(5)
        .max(86_400)
        .default(30)
        .describe('Seconds between status samples; a sample reads /proc and /sys and starts no process.'),
      http: z
        .strictObject({
          enabled: z.boolean().default(true).describe('Serve /healthz and /metrics (Prometheus) on 127.0.0.1, without identity data.'),
          port: port.default(9101).describe('Port of the local endpoint; it listens on 127.0.0.1 only.'),
        })
        .prefault({}),
      statusSocket: z
        .strictObject({
          enabled: z
            .boolean()
            .default(true)
            .describe('Serve the full status (board serial, identity fingerprints) to `fleetlet status` on <stateDir>/status.sock, mode 0600.'),
        })
        .prefault({}),
    })
    .prefault({}),
  limits: LimitsSection,
  commands: CommandsSection,
  log: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).prefault({}),
  hub: HubSection,
  enrolment: EnrolmentSection,
});

export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

/** Secrets that may instead be given as a path in the sibling `<key>File`. */
export const SECRET_PATHS = ['k3s.token', 'broker.auth.password'] as const;
/** Files whose content is secret: fleetlet warns when group or others can read them. */
export const SECRET_FILE_PATHS = [
  'k3s.tokenFile',
  'broker.auth.passwordFile',
  'broker.tls.keyFile',
  'hub.database.passwordFile',
  'hub.http.tlsKeyFile',
  'hub.enrolment.caKeyFile',
  'enrolment.bootstrapTokenFile',
] as const;
/**
 * Files needed only for a while, so a missing one is no config problem: the bootstrap token is spent once the device
 * enrolled, and an operator may delete it then (the enrolment part says so if it is missing when needed).
 */
export const MAY_BE_ABSENT_FILE_PATHS = ['enrolment.bootstrapTokenFile'] as const;
