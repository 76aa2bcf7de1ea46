import { diffieHellman, createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyCommand } from '../../src/commands/verify.js';
import { FileSealKey, SEAL_KEY_FILE } from '../../src/identity/seal-key.js';
import { parseCommandArgs, type CommandEnvelope } from '../../src/protocol/command.js';
import {
  openSealedSecret,
  SEALING_VECTOR,
  sealPrivateKeyFromHex,
  SealedSecretError,
  SealedSecretSchema,
  sealPublicKeyFromBase64,
  sealSecret,
  type SealBinding,
} from '../../src/protocol/sealed-secret.js';
import { encode, signedCommand, testKey, trustOf } from '../fixtures/command-keys.js';
import { REPO_ROOT } from '../helpers/paths.js';

const TOKEN = 'K10b2f1c0ffee::node:0123456789abcdef';
const binding: SealBinding = { commandId: 'c-0123456789ab', type: 'k3s.configure', arg: 'joinToken', deviceId: 'dev-a' };
const dirs: string[] = [];

async function deviceKey(): Promise<FileSealKey> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetlet-seal-'));
  dirs.push(dir);
  return (await FileSealKey.loadOrCreate(dir)).key;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('secrets sealed to one device', () => {
  it('opens with the device key it was sealed to, and the sealed form does not contain the secret', async () => {
    const a = await deviceKey();
    const sealed = sealSecret(TOKEN, sealPublicKeyFromBase64(a.publicKey!), binding);
    expect(SealedSecretSchema.parse(sealed)).toEqual(sealed);
    expect(JSON.stringify(sealed)).not.toContain('K10');
    expect(a.open(sealed, binding)).toBe(TOKEN);
  });

  it('a token sealed to device A is useless to device B', async () => {
    const a = await deviceKey();
    const b = await deviceKey();
    const sealed = sealSecret(TOKEN, sealPublicKeyFromBase64(a.publicKey!), binding);
    expect(() => b.open(sealed, binding)).toThrow(SealedSecretError);
    expect(() => b.open(sealed, { ...binding, deviceId: 'dev-b' })).toThrow(SealedSecretError);
  });

  it('a sealed value moved to another command, argument or device id does not open, nor one with a changed byte', async () => {
    const a = await deviceKey();
    const sealed = sealSecret(TOKEN, sealPublicKeyFromBase64(a.publicKey!), binding);
    expect(() => a.open(sealed, { ...binding, commandId: 'c-another-command' })).toThrow(SealedSecretError);
    expect(() => a.open(sealed, { ...binding, arg: 'serverUrl' })).toThrow(SealedSecretError);
    expect(() => a.open(sealed, { ...binding, type: 'k3s.upgrade' })).toThrow(SealedSecretError);
    expect(() => a.open(sealed, { ...binding, deviceId: 'dev-b' })).toThrow(SealedSecretError);
    const bytes = Buffer.from(sealed.ct, 'base64');
    bytes[0] = bytes[0]! ^ 1;
    expect(() => a.open({ ...sealed, ct: bytes.toString('base64') }, binding)).toThrow(SealedSecretError);
  });

  it('the same signed envelope re-addressed to device B fails its signature', async () => {
    const a = await deviceKey();
    const operator = testKey('ops');
    const now = Date.now();
    const id = 'c-0123456789ab';
    const joinToken = sealSecret(TOKEN, sealPublicKeyFromBase64(a.publicKey!), { ...binding, commandId: id });
    const envelope = signedCommand(operator, { id, type: 'k3s.configure', target: { device: 'dev-a' }, args: { joinToken } }, now);
    const readdressed: CommandEnvelope = { ...envelope, target: { device: 'dev-b' } };
    const verdict = verifyCommand(encode(readdressed), {
      trustedKeys: trustOf({ key: operator }),
      deviceId: 'dev-b',
      groups: [],
      nowMs: now,
      clockSkewMs: 0,
      maxLifetimeMs: 86_400_000,
      maxBytes: 65_536,
      seenBefore: () => false,
    });
    expect(verdict).toMatchObject({ ok: false, reason: 'bad_signature' });
  });

  it('a plaintext secret argument and a sealed one addressed to a group are refused by the args check', async () => {
    const a = await deviceKey();
    const operator = testKey('ops');
    const plain = signedCommand(operator, { type: 'k3s.configure', target: { device: 'dev-a' }, args: { joinToken: TOKEN } });
    expect(parseCommandArgs(plain)).toMatchObject({ ok: false, message: expect.stringContaining('args.joinToken') });
    const joinToken = sealSecret(TOKEN, sealPublicKeyFromBase64(a.publicKey!), binding);
    const toGroup = signedCommand(operator, { id: binding.commandId, type: 'k3s.configure', target: { group: 'alpha' }, args: { joinToken } });
    expect(parseCommandArgs(toGroup)).toMatchObject({ ok: false, message: expect.stringContaining('not to a group') });
    const toDevice = signedCommand(operator, { id: binding.commandId, type: 'k3s.configure', target: { device: 'dev-a' }, args: { joinToken } });
    expect(parseCommandArgs(toDevice)).toMatchObject({ ok: true });
  });

  it('the device key is made once, kept 0600 in the state directory, and a damaged one is replaced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetlet-seal-'));
    dirs.push(dir);
    const first = await FileSealKey.loadOrCreate(dir);
    expect(first.created).toBe(true);
    expect(statSync(join(dir, SEAL_KEY_FILE)).mode & 0o777).toBe(0o600);
    const again = await FileSealKey.loadOrCreate(dir);
    expect(again).toMatchObject({ created: false });
    expect(again.key.publicKey).toBe(first.key.publicKey);
    writeFileSync(join(dir, SEAL_KEY_FILE), 'not a key');
    const replaced = await FileSealKey.loadOrCreate(dir);
    expect(replaced).toMatchObject({ created: true, replaced: 'not a private key' });
    expect(replaced.key.publicKey).not.toBe(first.key.publicKey);
  });

  it('the test vector in docs/protocol.md opens with the device key, over RFC 7748 section 6.1 key agreement', () => {
    const recipient = sealPrivateKeyFromHex(SEALING_VECTOR.recipientPrivateHex);
    const ephemeral = sealPrivateKeyFromHex(SEALING_VECTOR.ephemeralPrivateHex);
    // RFC 7748 section 6.1: Bob's public key and the shared secret, as the RFC prints them.
    expect(createPublicKey(recipient).export({ format: 'der', type: 'spki' }).subarray(-32).toString('hex')).toBe(
      'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
    );
    expect(diffieHellman({ privateKey: ephemeral, publicKey: createPublicKey(recipient) }).toString('hex')).toBe(
      '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742',
    );
    const doc = readFileSync(join(REPO_ROOT, 'docs/protocol.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### Vector: a join token'));
    const sealedJson = /Sealed value:\n\n```json\n([\s\S]*?)\n```/.exec(section)?.[1];
    const sealed = SealedSecretSchema.parse(JSON.parse(sealedJson ?? 'null'));
    expect(openSealedSecret(sealed, recipient, SEALING_VECTOR.binding)).toBe(SEALING_VECTOR.plaintext);
  });
});
