import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, watch, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUARD_FILE, GUARD_SCRIPT, MARKER_FILE, TrialMarkerSchema, type TrialMarker } from '../../src/commands/agent-upgrade-guard.js';
import { LATEST_SCHEMA_VERSION } from '../../src/store/migrations.js';
import { SNAPSHOT_FILE } from '../../src/store/snapshot.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { bundleVariant, EXTRA_MIGRATION } from '../helpers/agent-variant.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { signedCommand, testKey } from '../fixtures/command-keys.js';

/**
 * agent.upgrade across a migration, SIGKILLed at random moments: in the old build while it downloads, snapshots and
 * swaps, in the new build while it migrates and is on trial, in the old build again while it restores the database
 * after a revert. Each run is one device: a fresh state directory, an installed "binary" (a launcher of the old or
 * the new build of test/fixtures/agent-upgrade-child.ts), the real shell guard before every start, the real commands
 * part on a real SQLite file. After the kill the device is started again (as systemd would) until it settles; then
 * the state must be one the design promises, decided only by what the kill left behind.
 */

const ITERATIONS_WITH_A_KILL = 50;
const TIME_BUDGET_MS = 150_000;
const operator = testKey('ops');
const sha = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

let work: { dir: string; cleanup: () => void };
let server: Server;
let artifactUrl = '';
const launcher = { old: '', new: '' };

beforeAll(async () => {
  work = tempDir('fleetlet-upgrade-crash-');
  const oldBuild = join(work.dir, 'old-build.cjs');
  const newBuild = join(work.dir, 'new-build.cjs');
  await bundleVariant('test/fixtures/agent-upgrade-child.ts', oldBuild, []);
  await bundleVariant('test/fixtures/agent-upgrade-child.ts', newBuild, [EXTRA_MIGRATION]);
  launcher.old = `require(${JSON.stringify(oldBuild)});\n// fleetlet 0.1.0\n`;
  launcher.new = `require(${JSON.stringify(newBuild)});\n// fleetlet 0.1.1\n`;
  const port = await freePort();
  server = createServer((_req, res) => res.writeHead(200, { 'content-length': Buffer.byteLength(launcher.new) }).end(launcher.new));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  artifactUrl = `http://127.0.0.1:${port}/fleetlet-0.1.1`;
}, 60_000);

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  work.cleanup();
});

interface Start {
  exit: 'killed' | 'restart' | 'settled';
  /** The trial marker as the killed process left it. */
  marker?: TrialMarker;
}

function readMarkerNow(stateDir: string): TrialMarker | undefined {
  const file = join(stateDir, MARKER_FILE);
  if (!existsSync(file)) return undefined;
  const lines = readFileSync(file, 'utf8').split('\n').filter((line) => line.includes('='));
  return TrialMarkerSchema.parse(Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)])));
}

/** What systemd does for one start: the guard (ExecStartPre), then the binary, with one INVOCATION_ID for both. */
function startOnce(device: Device, options: { command?: string; kill?: KillPoint }): Promise<Start> {
  const invocation = randomBytes(16).toString('hex');
  const guard = spawnSync('/bin/sh', [join(device.stateDir, GUARD_FILE), join(device.stateDir, MARKER_FILE)], {
    env: { INVOCATION_ID: invocation, PATH: process.env.PATH },
    encoding: 'utf8',
  });
  if (guard.status !== 0) throw new Error(`guard failed: ${guard.stderr}`);
  const child = spawn(process.execPath, [device.binary], {
    env: {
      PATH: process.env.PATH,
      NODE_PATH: join(REPO_ROOT, 'node_modules'),
      INVOCATION_ID: invocation,
      CHILD_STATE_DIR: device.stateDir,
      CHILD_BINARY: device.binary,
      CHILD_OPERATOR_PUB: operator.publicBase64,
      CHILD_HEALTHY: device.healthy ? '1' : '0',
      ...(options.command ? { CHILD_COMMAND_FILE: options.command } : {}),
      ...(options.kill?.after.startsWith('STEP ')
        ? { CHILD_KILL_AFTER_STEP: options.kill.after.slice('STEP '.length), CHILD_KILL_DELAY_MS: String(options.kill.delayMs) }
        : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let aimed = false;
  // The trial marker appearing: the few steps from there to the restart are a small target for a random delay.
  const watcher =
    options.kill?.after === 'MARKER'
      ? watch(device.stateDir, (_event, name) => {
          if (name !== MARKER_FILE || aimed) return;
          aimed = true;
          setTimeout(() => child.kill('SIGKILL'), options.kill!.delayMs);
        })
      : undefined;
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    const kill = options.kill;
    if (kill?.after === 'BOOT' && !aimed && output.startsWith('BOOT\n')) {
      aimed = true;
      setTimeout(() => child.kill('SIGKILL'), kill.delayMs);
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => {
      watcher?.close();
      if (signal === 'SIGKILL') return resolve({ exit: 'killed', marker: readMarkerNow(device.stateDir) });
      if (code !== 0) return reject(new Error(`a start failed (exit ${code}): ${output}`));
      resolve({ exit: output.includes('SETTLED') ? 'settled' : 'restart' });
    });
  });
}

/**
 * SIGKILL `delayMs` after the child began (BOOT) or wrote the trial marker (MARKER), sent by the test, or after it
 * began a step (STEP <name>), sent by itself.
 */
interface KillPoint {
  after: string;
  delayMs: number;
}

interface Device {
  stateDir: string;
  binary: string;
  healthy: boolean;
}

function finalResults(stateDir: string, commandId: string): CommandResult[] {
  const db = new BetterSqlite3(join(stateDir, 'fleetlet.db'), { readonly: true });
  try {
    const bodies = db.prepare(`SELECT body FROM outbox WHERE class = 'result' ORDER BY seq`).pluck().all() as string[];
    return bodies
      .map((body) => JSON.parse(body) as CommandResult)
      .filter((r) => r.commandId === commandId && (r.status === 'succeeded' || r.status === 'failed'));
  } finally {
    db.close();
  }
}

function schemaAndJournal(stateDir: string, commandId: string): { version: number; journalState: string } {
  const db = new BetterSqlite3(join(stateDir, 'fleetlet.db'), { readonly: true });
  try {
    return {
      version: db.prepare('SELECT MAX(version) FROM schema_version').pluck().get() as number,
      journalState: db.prepare('SELECT state FROM command_journal WHERE command_id = ?').pluck().get(commandId) as string,
    };
  } finally {
    db.close();
  }
}

describe('agent.upgrade across a migration, SIGKILLed at random moments', () => {
  it(`always ends on a binary with a database it opens, and reports what the kill left behind (${ITERATIONS_WITH_A_KILL}+ kills)`, async () => {
    const began = Date.now();
    const outcomes = { succeeded: 0, reverted: 0, killedIn: [0, 0, 0, 0], markerAtKill: {} as Record<string, number> };
    let kills = 0;
    for (let run = 0; kills < ITERATIONS_WITH_A_KILL; run += 1) {
      expect(Date.now() - began, `only ${kills} kills within the time budget`).toBeLessThan(TIME_BUDGET_MS);
      const dir = join(work.dir, `run-${run}`);
      const device: Device = { stateDir: join(dir, 'state'), binary: join(dir, 'bin', 'fleetlet'), healthy: run % 3 !== 2 };
      mkdirSync(join(dir, 'bin'), { recursive: true });
      mkdirSync(device.stateDir, { recursive: true, mode: 0o700 });
      writeFileSync(device.binary, launcher.old, { mode: 0o755 });
      writeFileSync(join(device.stateDir, GUARD_FILE), GUARD_SCRIPT, { mode: 0o700 });
      const command = signedCommand(operator, {
        type: 'agent.upgrade',
        target: { device: 'dev-1' },
        args: { version: '0.1.1', artifactUrl, sha256: sha(launcher.new) },
      });
      const commandFile = join(dir, 'command.json');
      writeFileSync(commandFile, JSON.stringify(command));

      // Kill in the 1st start (old build: download, snapshot, swap), the 2nd (new build: migrate, trial) or the
      // 3rd (old build after a revert: restore), at a random moment after the process began or, in the 1st, after
      // the download or swap step began or the trial marker appeared.
      const killStart = 1 + Math.floor(Math.random() * (device.healthy ? 2 : 3));
      const anchors = killStart === 1 ? ['BOOT', 'STEP download', 'STEP swap', 'MARKER'] : ['BOOT'];
      const after = anchors[Math.floor(Math.random() * anchors.length)]!;
      const kill = { after, delayMs: Math.floor(Math.random() * (after === 'MARKER' ? 30 : after === 'STEP swap' ? 100 : 150)) };
      let killed: Start | undefined;
      let settled = false;
      for (let start = 1; start <= 8 && !settled; start += 1) {
        // Delivered at every start, as a broker redelivers what was not acknowledged: once journaled, a replay.
        const outcome = await startOnce(device, {
          command: commandFile,
          ...(!killed && start === killStart ? { kill } : {}),
        });
        if (outcome.exit === 'killed') {
          killed = outcome;
          outcomes.killedIn[start] = (outcomes.killedIn[start] ?? 0) + 1;
        }
        settled = outcome.exit === 'settled';
      }
      expect(settled, `run ${run} never settled`).toBe(true);
      if (killed) kills += 1;

      // The guard's rule decides: a trial whose one start was used and not confirmed is reverted.
      const m = killed?.marker?.commandId === command.id ? killed.marker : undefined;
      if (killed) {
        const seen = m ? `${m.state}${m.state === 'trial' ? `-${m.attempts}` : ''}` : 'none';
        outcomes.markerAtKill[seen] = (outcomes.markerAtKill[seen] ?? 0) + 1;
      }
      const reverted = !device.healthy || m?.state === 'reverted' || (m?.state === 'trial' && m.attempts >= 1);
      const installed = readFileSync(device.binary, 'utf8');
      const { version, journalState } = schemaAndJournal(device.stateDir, command.id);
      const finals = finalResults(device.stateDir, command.id);
      const context = `run ${run}: healthy=${device.healthy} killed in start ${killStart} ${kill.delayMs} ms after ${kill.after}, marker ${JSON.stringify(m)}`;
      // At least once (a kill between queuing the result and closing the journal entry repeats it), always the same.
      expect(finals.length, context).toBeGreaterThanOrEqual(1);
      expect(new Set(finals.map((r) => r.status)).size, context).toBe(1);
      expect(journalState, context).toBe(reverted ? 'failed' : 'succeeded');
      expect(existsSync(join(device.stateDir, SNAPSHOT_FILE)), context).toBe(false);
      if (reverted) {
        expect(finals[0], context).toMatchObject({ status: 'failed', reason: 'reverted' });
        expect(installed, context).toBe(launcher.old);
        expect(version, context).toBe(LATEST_SCHEMA_VERSION);
        outcomes.reverted += 1;
      } else {
        expect(finals[0], context).toMatchObject({ status: 'succeeded' });
        expect(installed, context).toBe(launcher.new);
        expect(version, context).toBe(LATEST_SCHEMA_VERSION + 1);
        outcomes.succeeded += 1;
      }
    }
    console.log(`upgrade crash test: ${kills} kills in ${Math.round((Date.now() - began) / 1000)} s`, outcomes);
    expect(outcomes.succeeded).toBeGreaterThan(0);
    expect(outcomes.reverted).toBeGreaterThan(0);
  }, 200_000);
});
