import { createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { DeviceIdSchema, GroupIdSchema } from './ids.js';
import { SCHEMA_VERSION } from './topics.js';
import { canonicalJson } from './canonical-json.js';
import { LabelsSchema, TaintSchema } from './node-labels.js';
import { SealedSecretSchema } from './sealed-secret.js';
import { SignedTrustDocumentSchema, TRUST_KEY_ID_PATTERN } from './trust-document.js';
import { FleetletVersionSchema, K3sVersionSchema } from './version-patterns.js';

export { canonicalJson } from './canonical-json.js';

/**
 * The signed command envelope an operator publishes to a device or group command topic (wire contract v1).
 * The signature is Ed25519 over a canonical encoding of every field but `sig`, so that any change to the
 * target, the validity window or the arguments breaks it.
 */

export const COMMAND_ID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;
export const KEY_ID_PATTERN = TRUST_KEY_ID_PATTERN;
const SHA256_HEX = /^[a-f0-9]{64}$/;

const httpUrl = z
  .string()
  .max(2048)
  .refine((value) => URL.canParse(value) && ['http:', 'https:'].includes(new URL(value).protocol), {
    error: 'expected an http(s):// URL',
  });
/** What k3s.configure takes as a server URL, and what the node settings keep of it. */
export const HttpsUrlSchema = z
  .string()
  .max(2048)
  .refine((value) => URL.canParse(value) && new URL(value).protocol === 'https:', { error: 'expected an https:// URL' });

/** One args schema per command type; strict, so a misspelt argument is refused rather than ignored. */
export const PingArgsSchema = z.strictObject({});

export const K3sUpgradeArgsSchema = z
  .strictObject({
    version: K3sVersionSchema,
    artifactUrl: httpUrl.optional(),
    sha256: z.string().regex(SHA256_HEX, { error: 'expected a lowercase hex sha256' }).optional(),
    allowDowngrade: z.boolean().optional(),
  })
  .refine((args) => args.artifactUrl === undefined || args.sha256 !== undefined, {
    error: 'an artifactUrl needs its sha256',
    path: ['sha256'],
  });

export const K3sRestartArgsSchema = z.strictObject({});

/** Stops k3s and keeps it stopped, also across agent restarts, until a command restarts it. */
export const K3sStopArgsSchema = z.strictObject({});

export const K3sConfigureArgsSchema = z
  .strictObject({
    labels: LabelsSchema.optional(),
    taints: z.array(TaintSchema).max(64).optional(),
    serverUrl: HttpsUrlSchema.optional(),
    // Sealed to the target device's key (SECRET_ARGS): a plaintext token is refused.
    joinToken: SealedSecretSchema.optional(),
  })
  .refine((args) => Object.keys(args).length > 0, { error: 'expected at least one of labels, taints, serverUrl, joinToken' });

export const LogsCollectArgsSchema = z.strictObject({
  source: z.enum(['agent', 'k3s', 'both']).optional(),
  lines: z.int().min(1).max(5000).optional(),
});

export const AgentUpgradeArgsSchema = z.strictObject({
  version: FleetletVersionSchema,
  artifactUrl: httpUrl,
  sha256: z.string().regex(SHA256_HEX, { error: 'expected a lowercase hex sha256' }),
  /** By a release key of the trust document over the version and sha256 (`fleetlet fleet release sign`). */
  releaseSignature: z
    .strictObject({ keyId: z.string().regex(TRUST_KEY_ID_PATTERN), sig: z.string().regex(/^[A-Za-z0-9+/]{86}==$/) })
    .optional(),
});

/** Delivers a newer trust document, signed by the root key (`fleetlet fleet trust ...`). */
export const TrustUpdateArgsSchema = z.strictObject({ document: SignedTrustDocumentSchema });

/** The operator's answer to identity.fingerprint-changed; `fingerprint` picks one device among clones sharing an id. */
export const IdentityReidentifyArgsSchema = z.strictObject({
  fingerprint: z.string().regex(/^sha256:[0-9a-f]{16}$/, { error: 'expected the currentFingerprint the device reported' }),
  deviceId: DeviceIdSchema.optional(),
  /** A cloned image: a new k3s node password and id, so that the device joins as a node of its own. */
  newNodeIdentity: z.boolean().optional(),
});

/** Stops the running or waiting command with this id; it then reports `failed` with reason `cancelled`. */
export const CommandCancelArgsSchema = z.strictObject({
  commandId: z.string().regex(COMMAND_ID_PATTERN, { error: 'expected a command id: 8-64 of A-Z a-z 0-9 _ -' }),
});

export const COMMAND_ARGS = {
  ping: PingArgsSchema,
  'k3s.upgrade': K3sUpgradeArgsSchema,
  'k3s.restart': K3sRestartArgsSchema,
  'k3s.stop': K3sStopArgsSchema,
  'k3s.configure': K3sConfigureArgsSchema,
  'logs.collect': LogsCollectArgsSchema,
  'agent.upgrade': AgentUpgradeArgsSchema,
  'identity.reidentify': IdentityReidentifyArgsSchema,
  'command.cancel': CommandCancelArgsSchema,
  'trust.update': TrustUpdateArgsSchema,
} as const;

export type CommandType = keyof typeof COMMAND_ARGS;
export const COMMAND_TYPES = Object.keys(COMMAND_ARGS) as [CommandType, ...CommandType[]];

/**
 * The secret arguments, by command type: each travels sealed to the one target device's key (sealed-secret.ts),
 * never in clear, and a command carrying one is refused when it targets a group.
 */
export const SECRET_ARGS: Partial<Record<CommandType, readonly string[]>> = {
  'k3s.configure': ['joinToken'],
};

export function secretArgsOf(type: CommandType): readonly string[] {
  return SECRET_ARGS[type] ?? [];
}
export type CommandArgs<T extends CommandType> = z.output<(typeof COMMAND_ARGS)[T]>;

export const CommandTargetSchema = z.union([
  z.strictObject({ device: DeviceIdSchema }),
  z.strictObject({ group: GroupIdSchema }),
]);
export type CommandTarget = z.output<typeof CommandTargetSchema>;

/** The envelope without its signature: exactly what gets signed. Args are checked per type afterwards. */
export const UnsignedCommandSchema = z.strictObject({
  schemaVersion: z.literal(SCHEMA_VERSION),
  id: z.string().regex(COMMAND_ID_PATTERN, { error: 'expected a command id: 8-64 of A-Z a-z 0-9 _ -' }),
  type: z.enum(COMMAND_TYPES),
  target: CommandTargetSchema,
  issuedAt: z.int().min(0),
  expiresAt: z.int().min(0),
  args: z.record(z.string(), z.unknown()),
  keyId: z.string().regex(KEY_ID_PATTERN),
});
export type UnsignedCommand = z.output<typeof UnsignedCommandSchema>;

export const CommandEnvelopeSchema = UnsignedCommandSchema.extend({
  sig: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, { error: 'expected an Ed25519 signature in base64' }),
});
export type CommandEnvelope = z.output<typeof CommandEnvelopeSchema>;

/** An envelope whose args passed their type's schema. */
export type Command = {
  [T in CommandType]: Omit<CommandEnvelope, 'type' | 'args'> & { type: T; args: CommandArgs<T> };
}[CommandType];

export type ArgsCheck = { ok: true; command: Command } | { ok: false; message: string };

export function parseCommandArgs(envelope: CommandEnvelope): ArgsCheck {
  const secrets = secretArgsOf(envelope.type).filter((name) => envelope.args[name] !== undefined);
  if (secrets.length > 0 && 'group' in envelope.target) {
    return { ok: false, message: `args.${secrets[0]}: a sealed secret opens on one device only; send it to each device, not to a group` };
  }
  const result = COMMAND_ARGS[envelope.type].safeParse(envelope.args);
  if (!result.success) {
    const issue = result.error.issues[0];
    return { ok: false, message: `args.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}` };
  }
  return { ok: true, command: { ...envelope, args: result.data } as Command };
}

/** Prefixed to what is signed, so that a command signature can never be taken for the signature of anything else. */
export const SIGNING_DOMAIN = 'fleetlet-command-v1\n';

/** The exact bytes an Ed25519 command signature covers: the domain line, then the RFC 8785 form, in UTF-8. */
export function signingBytes(command: UnsignedCommand): Buffer {
  const { schemaVersion, id, type, target, issuedAt, expiresAt, args, keyId } = command;
  return Buffer.from(SIGNING_DOMAIN + canonicalJson({ schemaVersion, id, type, target, issuedAt, expiresAt, args, keyId }), 'utf8');
}

export function signCommand(command: UnsignedCommand, privateKey: KeyObject): CommandEnvelope {
  const sig = sign(null, signingBytes(command), privateKey).toString('base64');
  return { ...command, sig };
}

export function signatureValid(envelope: CommandEnvelope, publicKey: KeyObject): boolean {
  try {
    return verify(null, signingBytes(envelope), publicKey, Buffer.from(envelope.sig, 'base64'));
  } catch {
    return false;
  }
}

export function privateKeyFromPem(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 private key');
  return key;
}

export const COMMAND_EXAMPLE: CommandEnvelope = {
  schemaVersion: SCHEMA_VERSION,
  id: 'c-5f1e2d3c4b5a6978',
  type: 'k3s.upgrade',
  target: { group: 'canary' },
  issuedAt: 1_772_352_000_000,
  expiresAt: 1_772_438_400_000,
  args: { version: 'v1.36.3+k3s1' },
  keyId: 'ops-2026',
  sig: `${'A'.repeat(86)}==`,
};
