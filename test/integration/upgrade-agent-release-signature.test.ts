import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { agentUpgradeHandler } from '../../src/commands/agent-upgrade.js';
import { GUARD_FILE, MARKER_FILE, writeGuard } from '../../src/commands/agent-upgrade-guard.js';
import { TrustState } from '../../src/commands/trust-state.js';
import { trustUpdateHandler } from '../../src/commands/trust-update.js';
import { createLogger } from '../../src/lib/logger.js';
import { releaseSigningBytes, signBytes } from '../../src/protocol/trust-document.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey, trustOf } from '../fixtures/command-keys.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';
import { operatorEntry, trustDocument } from '../fixtures/trust-documents.js';

/**
 * agent.upgrade under a trust document that names a release key: the real handler, router, journal and trust file;
 * a real mirror over HTTP and the real upgrade guard. A build no release key signed is refused before any download.
 */
const root = testKey('root');
const ops = testKey('ops');
const releaseKey = testKey('release-2026');
const OLD_BINARY = Buffer.from('#!/bin/sh\n# fleetlet 0.1.0\n');
const NEW_BINARY = Buffer.concat([OLD_BINARY, Buffer.from('# fleetlet 0.2.0\n'), randomBytes(1024)]);
const NEW_SHA = createHash('sha256').update(NEW_BINARY).digest('hex');

async function mirror(): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server: Server = createServer((_req, res) => {
    requests += 1;
    res.writeHead(200, { 'content-length': NEW_BINARY.length }).end(NEW_BINARY);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/fleetlet-0.2.0`, requests: () => requests };
}

async function device() {
  const { dir, cleanup } = tempDir('fleetlet-release-sig-');
  onTestFinished(cleanup);
  const binary = join(dir, 'bin', 'fleetlet');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(binary, OLD_BINARY, { mode: 0o755 });
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir, { mode: 0o700 });
  // The unit's ExecStartPre ran the guard for this start: without it a self-update is refused for another reason.
  const invocationId = randomBytes(16).toString('hex');
  await writeGuard(stateDir);
  spawnSync('/bin/sh', [join(stateDir, GUARD_FILE), join(stateDir, MARKER_FILE)], { env: { INVOCATION_ID: invocationId }, timeout: 10_000 });
  const trust = new TrustState({ stateDir, bootstrapRoot: root.publicBase64, fallbackKeys: trustOf(), logger: createLogger({ level: 'silent' }) });
  let restarts = 0;
  const handler = agentUpgradeHandler({
    binaryPath: binary,
    stateDir,
    currentVersion: '0.1.0',
    confirmTimeoutMs: 10_000,
    maxArtifactBytes: 1 << 20,
    minFreeBytes: 0,
    downloadIdleTimeoutMs: 5_000,
    snapshotState: async () => join(stateDir, 'snapshot.db'),
    trialVerdict: async () => undefined,
    requestRestart: () => (restarts += 1),
    invocationId,
    checkRelease: (release) => trust.checkRelease(release),
  });
  const rig: RouterRig = routerRig({ stateDir, operator: ops, handlers: [handler, trustUpdateHandler(trust)], trust });
  onTestFinished(async () => {
    await rig.router.stop();
    rig.close();
  });
  const run = async (key: typeof ops, type: 'agent.upgrade' | 'trust.update', args: Record<string, unknown>) => {
    const command = signedCommand(key, { type, args });
    rig.router.receive(encode(command));
    await rig.router.idle();
    return rig.outbox.results().filter((r) => r.commandId === command.id);
  };
  const installed = await run(root, 'trust.update', {
    document: trustDocument(root, 1, {
      operatorKeys: [operatorEntry(ops)],
      releaseKeys: [{ id: releaseKey.id, publicKey: releaseKey.publicBase64 }],
    }),
  });
  expect(installed.at(-1)).toMatchObject({ status: 'succeeded' });
  return { binary, run, restarts: () => restarts };
}

const signature = (key: typeof releaseKey, version: string, sha256: string) => ({
  keyId: key.id,
  sig: signBytes(releaseSigningBytes({ version, sha256 }), key.privateKey),
});

describe('agent.upgrade checks the release signature of the trust document in force', () => {
  it('refuses a build without a release signature, or with one that does not hold, before downloading anything', async () => {
    const { url, requests } = await mirror();
    const d = await device();
    const args = { version: '0.2.0', artifactUrl: url, sha256: NEW_SHA };
    const stranger = testKey('release-2026');
    const cases: [string, Record<string, unknown>][] = [
      ['release_unsigned', args],
      // Signed by a key that calls itself the release key but is not the one the trust document names.
      ['release_signature_invalid', { ...args, releaseSignature: signature(stranger, '0.2.0', NEW_SHA) }],
      // The release key's signature over another version of the same binary.
      ['release_signature_invalid', { ...args, releaseSignature: signature(releaseKey, '0.2.1', NEW_SHA) }],
      // An operator key is not a release key, whatever it signs.
      ['release_signature_invalid', { ...args, releaseSignature: { ...signature(ops, '0.2.0', NEW_SHA), keyId: ops.id } }],
    ];
    for (const [reason, caseArgs] of cases) {
      const results = await d.run(ops, 'agent.upgrade', caseArgs);
      expect(results.map((r) => r.status)).toEqual(['accepted', 'failed']);
      expect(results.at(-1)).toMatchObject({ reason, detail: expect.stringContaining('nothing was changed') });
    }
    expect(requests()).toBe(0);
    expect(readFileSync(d.binary)).toEqual(OLD_BINARY);
    expect(d.restarts()).toBe(0);
  });

  it('downloads, swaps and restarts into a build the release key signed', async () => {
    const { url, requests } = await mirror();
    const d = await device();
    const results = await d.run(ops, 'agent.upgrade', { version: '0.2.0', artifactUrl: url, sha256: NEW_SHA, releaseSignature: signature(releaseKey, '0.2.0', NEW_SHA) });
    expect(results.map((r) => (r.status === 'progress' ? r.step : r.status))).toEqual(['accepted', 'download', 'swap', 'restarting']);
    expect(requests()).toBe(1);
    expect(readFileSync(d.binary)).toEqual(NEW_BINARY);
    expect(d.restarts()).toBe(1);
  });
});
