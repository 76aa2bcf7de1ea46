import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TrustState } from '../../src/commands/trust-state.js';
import { createLogger } from '../../src/lib/logger.js';
import { SignedTrustDocumentSchema, signedBy, type SignedTrustDocument } from '../../src/protocol/trust-document.js';
import { createHash } from 'node:crypto';
import { runCli } from '../helpers/cli.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { startTestDevice } from '../fixtures/command-device.js';
import { FLEETLET_BUNDLE, tempDir } from '../helpers/paths.js';
import { trustOf } from '../fixtures/command-keys.js';

/**
 * `fleetlet fleet trust ...` and `fleet release sign` in the bundled CLI, each version of the document they write
 * fed to the device's real TrustState: what the operator side signs is what a device accepts.
 */
describe('fleet trust CLI', () => {
  let dir: { dir: string; cleanup: () => void };
  beforeEach(() => (dir = tempDir('fleetlet-trust-cli-')));
  afterEach(() => dir.cleanup());

  const path = (name: string) => join(dir.dir, name);
  const read = (file: string): SignedTrustDocument => SignedTrustDocumentSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  const ok = (args: string[]) => {
    const run = runCli(['fleet', ...args]);
    expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(0);
    return run.stdout;
  };
  const keygen = (name: string) => /public key (\S+)/.exec(ok(['keygen', path(`${name}.key`)]))![1]!;

  it('init, add-key, revoke, rotate-root and show round-trip into documents a device accepts in turn', async () => {
    const doc = path('trust.json');
    const rootKey = path('root.key');
    const trustArgs = ['--document', doc, '--root-key', rootKey];
    const initOut = ok(['trust', 'init', ...trustArgs]);
    expect(statSync(rootKey).mode & 0o777).toBe(0o600);
    const rootPublic = /trustRoot: (\S+)/.exec(initOut)![1]!;
    expect(read(doc).document).toMatchObject({ version: 1, root: { publicKey: rootPublic }, operatorKeys: [], revoked: [] });
    expect(signedBy(read(doc), rootPublic)).toBe(true);
    const again = runCli(['fleet', 'trust', 'init', ...trustArgs]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already exists');

    const device = new TrustState({ stateDir: dir.dir, bootstrapRoot: rootPublic, fallbackKeys: trustOf(), logger: createLogger({ level: 'silent' }) });
    const accept = async () => expect(await device.apply(read(doc))).toMatchObject({ ok: true });
    await accept();

    const opsPublic = keygen('ops-2026');
    ok(['trust', 'add-key', 'ops-2026', '--public-key', opsPublic, '--types', 'ping,k3s.restart', '--targets', 'group:canary,device:pi-1', '--expires', '2030-01-01T00:00:00Z', ...trustArgs]);
    expect(read(doc).document).toMatchObject({
      version: 2,
      operatorKeys: [{ id: 'ops-2026', publicKey: opsPublic, scopes: { types: ['ping', 'k3s.restart'], targets: ['group:canary', 'device:pi-1'] }, expiresAt: Date.parse('2030-01-01T00:00:00Z') }],
    });
    await accept();
    expect(device.keys().get('ops-2026')?.scopes?.targets).toEqual(['group:canary', 'device:pi-1']);

    const releasePublic = keygen('release-2026');
    ok(['trust', 'add-key', 'release-2026', '--public-key', releasePublic, '--release', ...trustArgs]);
    expect(read(doc).document).toMatchObject({ version: 3, releaseKeys: [{ id: 'release-2026', publicKey: releasePublic }] });
    await accept();

    const typo = runCli(['fleet', 'trust', 'add-key', 'x', '--public-key', opsPublic, '--types', 'k3s.reboot', ...trustArgs]);
    expect(typo.code).toBe(64);
    expect(read(doc).document.version).toBe(3);

    ok(['trust', 'revoke', 'ops-2026', ...trustArgs]);
    expect(read(doc).document).toMatchObject({ version: 4, operatorKeys: [], revoked: ['ops-2026'] });
    await accept();
    expect(device.keys().get('ops-2026')?.revoked).toBe(true);
    // The version just accepted, edited by hand and re-signed by nobody: the device keeps what it has.
    const forged = read(doc);
    forged.document.revoked = [];
    writeFileSync(path('forged.json'), JSON.stringify({ ...forged, document: { ...forged.document, version: 5 } }));
    expect(await device.apply(read(path('forged.json')))).toMatchObject({ ok: false, reason: 'trust_bad_signature' });

    ok(['trust', 'renew', '--until', '2031-01-01T00:00:00Z', ...trustArgs]);
    expect(read(doc).document).toMatchObject({ version: 5, expiresAt: Date.parse('2031-01-01T00:00:00Z') });
    await accept();
    ok(['trust', 'renew', '--until', 'never', ...trustArgs]);
    expect(read(doc).document.expiresAt).toBeUndefined();
    await accept();

    const newRootPublic = keygen('root-2027');
    copyFileSync(doc, path('before-rotation.json'));
    ok(['trust', 'rotate-root', '--new-root-key', path('root-2027.key'), ...trustArgs]);
    const rotated = read(doc);
    expect(rotated.document).toMatchObject({ version: 7, root: { publicKey: newRootPublic } });
    expect(signedBy(rotated, rootPublic) && signedBy(rotated, newRootPublic)).toBe(true);
    await accept();
    const oldRoot = runCli(['fleet', 'trust', 'revoke', 'release-2026', ...trustArgs]);
    expect(oldRoot.code).toBe(1);
    expect(oldRoot.stderr).toContain('not signed by the root key');
    ok(['trust', 'revoke', 'release-2026', '--document', doc, '--root-key', path('root-2027.key')]);
    await accept();

    const shown = ok(['trust', 'show', '--document', doc]);
    expect(shown).toContain('trust document version 8');
    expect(shown).toContain(`root ${newRootPublic}`);
    expect(shown).toContain('revoked: ops-2026, release-2026');
  });

  it('release sign prints a signature over the version and sha256 that the trust document in force accepts', async () => {
    const doc = path('trust.json');
    const rootPublic = /trustRoot: (\S+)/.exec(ok(['trust', 'init', '--document', doc, '--root-key', path('root.key')]))![1]!;
    const releasePublic = keygen('release-2026');
    ok(['trust', 'add-key', 'release-2026', '--public-key', releasePublic, '--release', '--document', doc, '--root-key', path('root.key')]);
    const device = new TrustState({ stateDir: dir.dir, bootstrapRoot: rootPublic, fallbackKeys: trustOf(), logger: createLogger({ level: 'silent' }) });
    expect(await device.apply(read(doc))).toMatchObject({ ok: true });

    const binary = path('fleetlet-0.2.0');
    writeFileSync(binary, 'a build');
    const sha256 = createHash('sha256').update('a build').digest('hex');
    const signature = JSON.parse(ok(['release', 'sign', '--key', path('release-2026.key'), '--release-version', '0.2.0', '--file', binary]).split('\n')[0]!) as { keyId: string; sig: string };
    expect(signature.keyId).toBe('release-2026');
    expect(device.checkRelease({ version: '0.2.0', sha256, releaseSignature: signature })).toEqual({ ok: true });
    expect(device.checkRelease({ version: '0.2.1', sha256, releaseSignature: signature })).toMatchObject({ ok: false, reason: 'release_signature_invalid' });
    expect(device.checkRelease({ version: '0.2.0', sha256 })).toMatchObject({ ok: false, reason: 'release_unsigned' });

    // A rollout carries it in every agent.upgrade it signs; the args are checked against the device's schema first.
    const rollout = (releaseSignature: string) =>
      runCli(['fleet', 'rollout', 'agent', '--state', path('rollout.json'), '--to', '0.2.0', '--sha256', sha256, '--artifact-url', 'https://mirror.example/fleetlet',
        '--release-signature', releaseSignature, '--broker', 'mqtt://127.0.0.1:9', '--allow-plaintext', '--key', path('release-2026.key'), '--dry-run']);
    const malformed = rollout(JSON.stringify({ ...signature, sig: 'not base64' }));
    expect(malformed.code).toBe(64);
    expect(malformed.stderr).toContain('releaseSignature');
    expect(rollout(JSON.stringify(signature)).stderr).not.toContain('releaseSignature');
  });

  it('send trust.update --arg-json delivers the document, signed by the root, to a device on a real broker', async () => {
    const doc = path('trust.json');
    const rootKey = path('root.key');
    const rootPublic = /trustRoot: (\S+)/.exec(ok(['trust', 'init', '--document', doc, '--root-key', rootKey]))![1]!;
    ok(['trust', 'add-key', 'ops-2026', '--public-key', keygen('ops-2026'), '--document', doc, '--root-key', rootKey]);
    const broker = await startMosquitto();
    // The device trusts the root's key as an operator key too: it signs this first update itself.
    const device = await startTestDevice({ brokerUrl: broker.url, dir: path('device'), deviceId: 'pi-1', trustedKeys: [{ id: 'root', publicKey: rootPublic }], trustRoot: rootPublic });
    try {
      // Not spawnSync: the device answers from this process's event loop.
      const sent = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const args = ['fleet', 'send', 'trust.update', '--broker', broker.url, '--allow-plaintext', '--key', rootKey, '--key-id', 'root', '--device', 'pi-1', '--arg-json', `document=${doc}`, '--wait', '20'];
        execFile(process.execPath, [FLEETLET_BUNDLE, ...args], { env: { PATH: process.env.PATH ?? '' }, timeout: 30_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
        );
      });
      expect(sent.code, sent.stderr + sent.stdout).toBe(0);
      expect(sent.stdout).toMatch(/succeeded/);
      // What the agent kept, as its next start reads it.
      const trust = new TrustState({ stateDir: device.stateDir, bootstrapRoot: rootPublic, fallbackKeys: trustOf(), logger: createLogger({ level: 'silent' }) });
      expect(trust.document()?.document.version).toBe(2);
      expect(trust.keys().has('ops-2026')).toBe(true);
    } finally {
      await device.stop();
      await broker.close();
    }
  });
});
