import type { KeyObject } from 'node:crypto';
import {
  COMMAND_ID_PATTERN,
  CommandEnvelopeSchema,
  COMMAND_TYPES,
  parseCommandArgs,
  signatureValid,
  type Command,
  type CommandEnvelope,
  type CommandType,
} from '../protocol/command.js';
import type { RejectReason } from '../protocol/result.js';
import { parseStrictJson } from '../protocol/strict-json.js';
import type { KeyScopes } from '../protocol/trust-document.js';

export interface TrustedKey {
  key: KeyObject;
  revoked: boolean;
  /** From the trust document: after this time (plus the clock-skew allowance) the key signs nothing. */
  expiresAt?: number;
  /** From the trust document; absent for the unscoped keys of `commands.trustedKeys`. */
  scopes?: KeyScopes;
}

export interface VerifyContext {
  trustedKeys: ReadonlyMap<string, TrustedKey>;
  deviceId: string;
  groups: readonly string[];
  nowMs: number;
  clockSkewMs: number;
  maxLifetimeMs: number;
  maxBytes: number;
  /** True when the journal already holds this command id. */
  seenBefore: (commandId: string) => boolean;
  /**
   * Set once the journal lost entries (the state database was recovered, or the journal was full): a command issued
   * before this time (plus the clock-skew allowance) may have run already.
   */
  replayHorizonMs?: number;
}

export type Verdict =
  | { ok: true; command: Command }
  | { ok: false; reason: RejectReason; detail: string; commandId: string | null; type: CommandType | null };

/**
 * The checks a command passes before anything runs, in this order: size, strict JSON, schema, trusted key, signature,
 * target, validity window, journal. Cheap checks that need no trust come first; nothing the sender wrote is
 * believed (not even its id, beyond echoing it) until the signature holds.
 */
export function verifyCommand(payload: Uint8Array, context: VerifyContext): Verdict {
  if (payload.byteLength > context.maxBytes) {
    return refuse('too_large', `${payload.byteLength} bytes is over the limit of ${context.maxBytes}`, null, null);
  }

  // Ambiguous JSON (duplicate keys, __proto__, bad UTF-8...) is refused before any field is read: its id and type
  // would depend on which parser read it, so none is echoed.
  const strict = parseStrictJson(payload);
  if (!strict.ok) return refuse('malformed', strict.problem, null, null);
  const json = strict.value;
  const parsed = CommandEnvelopeSchema.safeParse(json);
  const echoedId = idOf(json);
  const echoedType = typeOf(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return refuse('malformed', `${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`, echoedId, echoedType);
  }
  const envelope = parsed.data;
  const args = parseCommandArgs(envelope);
  if (!args.ok) return refuse('bad_args', args.message, envelope.id, envelope.type);
  const { command } = args;

  const standing = keyStanding(command, context.trustedKeys, context.nowMs, context.clockSkewMs);
  if (standing) return refuse(standing.reason, standing.detail, command.id, command.type);

  if (!targetsMe(command, context)) {
    return refuse('wrong_target', `addressed to ${JSON.stringify(command.target)}`, command.id, command.type);
  }

  const { nowMs, clockSkewMs } = context;
  if (command.expiresAt <= command.issuedAt || command.expiresAt - command.issuedAt > context.maxLifetimeMs) {
    return refuse('lifetime_too_long', `valid from ${command.issuedAt} to ${command.expiresAt}`, command.id, command.type);
  }
  if (command.expiresAt + clockSkewMs < nowMs) {
    return refuse('expired', `expired at ${iso(command.expiresAt)}; device clock ${iso(nowMs)}`, command.id, command.type);
  }
  if (command.issuedAt - clockSkewMs > nowMs) {
    return refuse('not_yet_valid', `issued at ${iso(command.issuedAt)}, after the device clock ${iso(nowMs)}`, command.id, command.type);
  }

  if (context.seenBefore(command.id)) return refuse('replayed', 'this command id was seen before', command.id, command.type);
  // A command the journal forgot was accepted before the horizon, so issuedAt <= horizon + skew: refusing up to that
  // bound refuses every one that may have run. A new command (new id, issued now) goes through.
  if (context.replayHorizonMs !== undefined && command.issuedAt < context.replayHorizonMs + clockSkewMs) {
    return refuse(
      'replayed',
      `issued at ${iso(command.issuedAt)}, before ${iso(context.replayHorizonMs)}, the oldest time the command journal still covers (the state database was recovered, or the journal was full): it may have run already; send it again with a new id`,
      command.id,
      command.type,
    );
  }
  return { ok: true, command };
}

export type StandingReason = 'unknown_key' | 'revoked_key' | 'key_expired' | 'bad_signature' | 'out_of_scope';

/**
 * Whether the command's key may sign it, now: listed, not revoked, not expired, its signature holding, and its scopes
 * covering the command's type and target. Also asked of a journaled command before it resumes after a restart, so that
 * a key taken back in between stops what it started. Undefined when the key stands.
 */
export function keyStanding(
  command: Command,
  trustedKeys: ReadonlyMap<string, TrustedKey>,
  nowMs: number,
  clockSkewMs: number,
): { reason: StandingReason; detail: string } | undefined {
  const name = `key "${command.keyId}"`;
  const trusted = trustedKeys.get(command.keyId);
  if (!trusted) return { reason: 'unknown_key', detail: `${name} is not trusted` };
  if (trusted.revoked) return { reason: 'revoked_key', detail: `${name} was revoked` };
  if (trusted.expiresAt !== undefined && trusted.expiresAt + clockSkewMs < nowMs) {
    return { reason: 'key_expired', detail: `${name} expired at ${iso(trusted.expiresAt)}; device clock ${iso(nowMs)}` };
  }
  if (!signatureValid(command as CommandEnvelope, trusted.key)) return { reason: 'bad_signature', detail: `signature does not match ${name}` };
  const scopes = trusted.scopes;
  if (scopes && !scopes.types.includes('*') && !scopes.types.includes(command.type)) {
    return { reason: 'out_of_scope', detail: `${name} may not sign ${command.type} (it may sign ${scopes.types.join(', ')})` };
  }
  const target = 'device' in command.target ? `device:${command.target.device}` : `group:${command.target.group}`;
  if (scopes && !scopes.targets.includes('*') && !scopes.targets.includes(target)) {
    return { reason: 'out_of_scope', detail: `${name} may not address ${target} (it may address ${scopes.targets.join(', ')})` };
  }
  return undefined;
}

/** Both times in refusals: a board without a real-time clock may boot years behind, and refuse everything. */
function iso(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}

function targetsMe(command: Command, context: VerifyContext): boolean {
  if ('device' in command.target) return command.target.device === context.deviceId;
  return context.groups.includes(command.target.group);
}

function refuse(reason: RejectReason, detail: string, commandId: string | null, type: CommandType | null): Verdict {
  return { ok: false, reason, detail, commandId, type };
}

/** The sender's id, echoed in a refusal only when it is well-formed (it ends up in a topic payload). */
function idOf(json: unknown): string | null {
  const id = (json as { id?: unknown } | null)?.id;
  return typeof id === 'string' && COMMAND_ID_PATTERN.test(id) ? id : null;
}

function typeOf(json: unknown): CommandType | null {
  const type = (json as { type?: unknown } | null)?.type;
  return typeof type === 'string' && (COMMAND_TYPES as string[]).includes(type) ? (type as CommandType) : null;
}
