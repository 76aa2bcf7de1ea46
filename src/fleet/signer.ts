import { randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import {
  COMMAND_ARGS,
  KEY_ID_PATTERN,
  privateKeyFromPem,
  signCommand,
  type CommandEnvelope,
  type CommandTarget,
  type CommandType,
  type UnsignedCommand,
} from '../protocol/command.js';
import { parseStrictJson } from '../protocol/strict-json.js';
import { SCHEMA_VERSION } from '../protocol/topics.js';
import { errorReason, UsageError } from '../lib/errors.js';
import { SigningKeyError } from './errors.js';

const MAX_KEY_FILE_BYTES = 16 * 1024;

export interface SigningKey {
  keyId: string;
  key: KeyObject;
}

/**
 * Loads the operator's private key. A key file others can read is refused, as ssh does: whoever can read it can
 * command the whole fleet. The key id defaults to the file name without ".key" (what keygen writes).
 */
export function loadSigningKey(file: string, keyId?: string): SigningKey {
  let pem: string;
  try {
    const stat = statSync(file);
    if ((stat.mode & 0o077) !== 0) {
      throw new SigningKeyError(`${file} is readable by others (mode ${(stat.mode & 0o777).toString(8)}); chmod 600 it`);
    }
    if (stat.size > MAX_KEY_FILE_BYTES) throw new SigningKeyError(`${file} is too large to be a key`);
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof SigningKeyError) throw err;
    throw new SigningKeyError(`cannot read signing key ${file}: ${errorReason(err)}`);
  }
  const id = keyId ?? basename(file).replace(/\.key$/, '');
  if (!KEY_ID_PATTERN.test(id)) throw new SigningKeyError(`"${id}" is not a valid key id; pass --key-id`);
  try {
    return { keyId: id, key: privateKeyFromPem(pem) };
  } catch {
    throw new SigningKeyError(`${file} is not an Ed25519 private key`);
  }
}

export interface CommandRequest {
  type: CommandType;
  target: CommandTarget;
  args: Record<string, unknown>;
  ttlSeconds: number;
  now?: number;
  /** Set when the args were sealed for this id already (see seal-args.ts); otherwise a new one. */
  id?: string;
}

export function newCommandId(): string {
  return `c-${randomBytes(9).toString('base64url')}`;
}

/** Checks the args against the same schema the device uses, then signs: a typo fails here, not on 1,000 devices. */
export function buildSignedCommand(request: CommandRequest, signer: SigningKey): CommandEnvelope {
  const checked = COMMAND_ARGS[request.type].safeParse(request.args);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new UsageError(`invalid args for ${request.type}: ${issue?.path.join('.') || '(args)'}: ${issue?.message}`);
  }
  const issuedAt = request.now ?? Date.now();
  const command: UnsignedCommand = {
    schemaVersion: SCHEMA_VERSION,
    id: request.id ?? newCommandId(),
    type: request.type,
    target: request.target,
    issuedAt,
    expiresAt: issuedAt + request.ttlSeconds * 1000,
    args: request.args,
    keyId: signer.keyId,
  };
  // Devices refuse what a strict parser finds ambiguous (a label named "constructor", a lone surrogate): say so here.
  const strict = parseStrictJson(Buffer.from(JSON.stringify(command), 'utf8'));
  if (!strict.ok) throw new UsageError(`devices would refuse this ${request.type}: ${strict.problem}`);
  return signCommand(command, signer.key);
}
