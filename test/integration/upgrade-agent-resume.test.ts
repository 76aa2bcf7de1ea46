import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SEEN_FILE } from '../../src/commands/agent-upgrade-guard.js';
import { snapshotDatabase } from '../../src/store/snapshot.js';
import { agentUpgradeHandler } from '../../src/commands/agent-upgrade.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { waitFor } from '../helpers/wait.js';
import { tempDir } from '../helpers/paths.js';
import { sha256, startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { signedCommand, testKey } from '../fixtures/command-keys.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';

/** agent.upgrade resumed after a crash between its download and its swap, with the real router, journal and files. */
const operator = testKey('ops');
const OLD_BINARY = Buffer.from('#!/bin/sh\necho fleetlet 0.1.0\n');
const NEW_BINARY = Buffer.from('#!/bin/sh\necho fleetlet 0.1.1\n');
const INVOCATION = 'invocation-with-guard';

let server: ReleaseServer;
let dir: string;
let cleanup: () => void;
let binaryPath: string;
let restarts: number;
let rig: RouterRig | undefined;

beforeAll(async () => {
  server = await startReleaseServer();
  server.publish('0.1.1', { fleetlet: NEW_BINARY });
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-agent-resume-'));
  binaryPath = join(dir, 'bin', 'fleetlet');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(binaryPath, OLD_BINARY, { mode: 0o755 });
  mkdirSync(join(dir, 'state'));
  // The guard ran before this start (what the unit's ExecStartPre leaves).
  writeFileSync(join(dir, 'state', SEEN_FILE), `${INVOCATION}\n`);
  restarts = 0;
});
afterEach(() => {
  rig?.close();
  rig = undefined;
  cleanup();
});

function device(): RouterRig {
  rig = routerRig({
    stateDir: join(dir, 'state'),
    operator,
    handlers: [
      agentUpgradeHandler({
        binaryPath,
        stateDir: join(dir, 'state'),
        currentVersion: '0.1.0',
        confirmTimeoutMs: 10_000,
        maxArtifactBytes: 1024 * 1024,
        minFreeBytes: 1024,
        downloadIdleTimeoutMs: 5_000,
        // The real snapshot of the rig's state database; a restart only counts here, so no verdict ever comes.
        snapshotState: () => snapshotDatabase(rig!.db, join(dir, 'state')),
        trialVerdict: () => new Promise(() => {}),
        requestRestart: () => void (restarts += 1),
        invocationId: INVOCATION,
      }),
    ],
  });
  return rig;
}

function interruptedAtSwap(expiresInMs: number, newPath: string) {
  const command = signedCommand(operator, {
    type: 'agent.upgrade',
    args: { version: '0.1.1', artifactUrl: `${server.artifactUrl}/0.1.1/fleetlet`, sha256: sha256(NEW_BINARY) },
    expiresAt: Date.now() + expiresInMs,
  });
  const before = device();
  expect(before.journal.begin(command as never, Date.now())).toBe(true);
  before.journal.saveStep(command.id, { state: 'swap', newPath, newSha: sha256(NEW_BINARY), fromSha: sha256(OLD_BINARY) }, true);
  before.close();
  rig = undefined;
  return command;
}

const resultsOf = (d: RouterRig, id: string): CommandResult[] => d.outbox.results().filter((r) => r.commandId === id);

describe('agent.upgrade resumed between its download and its swap', () => {
  it('downloads again when its verified file is gone, then swaps and restarts', async () => {
    const command = interruptedAtSwap(60_000, join(dir, 'bin', '.fleetlet.download-5eb7e9ed'));
    const d = device();
    d.router.resumeInterrupted();
    await d.router.idle();
    expect(resultsOf(d, command.id).flatMap((r) => (r.status === 'progress' ? [r.step] : []))).toEqual(['download', 'swap', 'restarting']);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(NEW_BINARY));
    expect(restarts).toBe(1);
  });

  it('ends as expired, with the old binary in place and the file removed, when the command expired meanwhile', async () => {
    const newPath = join(dir, 'bin', '.fleetlet.download-0ddba11e');
    writeFileSync(newPath, NEW_BINARY, { mode: 0o600 });
    const command = interruptedAtSwap(500, newPath);
    await waitFor(() => Date.now() > command.expiresAt, 'the command to expire', 5_000);
    const d = device();
    d.router.resumeInterrupted();
    await d.router.idle();
    expect(resultsOf(d, command.id).at(-1)).toMatchObject({ status: 'failed', reason: 'expired' });
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(OLD_BINARY));
    expect(existsSync(newPath)).toBe(false);
    expect(readdirSync(join(dir, 'bin'))).toEqual(['fleetlet']);
    expect(restarts).toBe(0);
  });
});
