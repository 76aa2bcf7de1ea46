import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandJournal } from '../../src/commands/journal.js';
import type { NodeSettings } from '../../src/k3s/node-settings.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { openDatabase } from '../../src/store/db.js';
import { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import { bundleFixture } from '../helpers/bundle-fixture.js';
import { FAKE_K3S } from '../helpers/fake-k3s.js';
import { isAlive } from '../helpers/k3s-supervisor.js';
import { waitFor } from '../helpers/wait.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { freeFixedPort } from '../helpers/ports.js';
import { descendantsOf, processesMatching, signalIfAlive } from '../helpers/processes.js';
import { encode, testKey } from '../fixtures/command-keys.js';
import { sealedConfigure, tokenOfArgv } from '../fixtures/sealed-configure.js';
import { FileSealKey } from '../../src/identity/seal-key.js';
import { CONFIGURED_K3S } from '../fixtures/runner-device.js';

const RUNNER = join(REPO_ROOT, 'dist/k3s-configure-runner.cjs');
const ITERATIONS = 52;
/** Share of changes k3s cannot be healthy with; each costs a full health wait, so fewer than good ones. */
const BAD_SHARE = 0.2;
/** The fake k3s is healthy well within this even on a loaded machine; a bad change costs this much per wait. */
const HEALTH_TIMEOUT_MS = 2_000;
/** Never resolves (RFC 2606): the fake k3s retries it forever and never becomes healthy. */
const UNREACHABLE = 'https://k3s.unreachable.invalid:6443';
const operator = testKey('ops');
const roomy = { maxRows: 100_000, maxBytes: 1 << 28 };

interface Run {
  code: number | null;
  killed: boolean;
  ms: number;
  stderr: string;
}

/**
 * k3s.configure killed with SIGKILL at random moments: the real router, journal, outbox, node settings file and
 * supervisor (over the fake k3s) run in a child process; after each kill a second run resumes the command. Whatever
 * the moment, the command must end exactly once, either applied or with EXACTLY the settings from before it,
 * and k3s must run healthy on the settings the result claims.
 */
describe('k3s.configure across SIGKILL at random moments', () => {
  let dir: string;
  let cleanup: () => void;
  let healthzPort: number;

  beforeAll(async () => {
    await bundleFixture('k3s-configure-runner.ts', RUNNER);
    ({ dir, cleanup } = tempDir('fleetlet-configure-crash-'));
    healthzPort = await freeFixedPort();
    const boot = await runOnce();
    expect(boot.code, boot.stderr).toBe(0);
    // A run without a command starts k3s and leaves at once; k3s becomes healthy on its own.
    await waitFor(async () => (await healthz().catch(() => 0)) === 200, 'k3s healthy after the first start', 30_000);
  }, 60_000);
  afterAll(async () => {
    // The runs leave k3s running for the next one, as fleetlet does; the test ends it (one SIGTERM, as fleetlet would).
    for (const pid of processesMatching(join(dir, 'data'))) signalIfAlive(pid, 'SIGTERM');
    // A k3s that outlives this wait must not keep the directory from being removed.
    await waitFor(() => !processesMatching(join(dir, 'data')).some(isAlive), 'k3s to stop', 10_000).catch(() => {});
    cleanup();
  });

  /** One run of the device; `killAfterMs` counts from the moment it takes the command, `killAt` is a step boundary. */
  const runOnce = (options: { command?: unknown; killAfterMs?: number; killAt?: string } = {}): Promise<Run> => {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      RUN_DIR: dir,
      RUN_FAKE_K3S: FAKE_K3S,
      RUN_HEALTHZ_PORT: String(healthzPort),
      RUN_OPERATOR_PUB: operator.publicBase64,
      RUN_HEALTH_TIMEOUT_MS: String(HEALTH_TIMEOUT_MS),
      RUN_KILL_AT: options.killAt ?? '',
    };
    if (options.command) {
      env.RUN_COMMAND_FILE = join(dir, 'command.json');
      writeFileSync(env.RUN_COMMAND_FILE, encode(options.command));
    }
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [RUNNER], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let received = 0;
      let killer: NodeJS.Timeout | undefined;
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdout.on('data', (chunk: Buffer) => {
        if (received || !chunk.toString().includes('RECEIVED')) return;
        received = Date.now();
        if (options.killAfterMs !== undefined) killer = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs);
      });
      const limit = setTimeout(() => child.kill('SIGKILL'), 60_000);
      child.on('exit', (code, signal) => {
        clearTimeout(killer);
        clearTimeout(limit);
        resolve({ code, killed: signal === 'SIGKILL', ms: received ? Date.now() - received : 0, stderr });
      });
    });
  };

  const withDatabase = <T>(read: (db: ReturnType<typeof openDatabase>['db']) => T): T => {
    const { db } = openDatabase({ stateDir: join(dir, 'state'), fleetletVersion: 'configure-crash-test' });
    try {
      return read(db);
    } finally {
      db.close();
    }
  };
  const resultsOf = (commandId: string): CommandResult[] =>
    withDatabase((db) => {
      const outbox = new SqliteOutbox(db, { limits: { budgets: { status: roomy, event: roomy, result: roomy }, maxTotalBytes: 1 << 29, maxRecordBytes: 1 << 16 } });
      return outbox
        .pending(0, 1_000_000)
        .filter((r) => r.class === 'result')
        .map((r) => JSON.parse(r.body) as CommandResult)
        .filter((r) => r.commandId === commandId);
    });
  /** Where the killed run left the command: not received, a saved phase, or finished. */
  const stageOf = (commandId: string): string =>
    withDatabase((db) => {
      const entry = new CommandJournal(db).get(commandId);
      if (!entry) return 'not-received';
      if (entry.state !== 'running') return 'finished';
      return (entry.step as { phase?: string } | undefined)?.phase ?? 'applying';
    });
  const settingsOnDisk = (): NodeSettings => {
    const file = join(dir, 'work', 'node-settings.json');
    return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as NodeSettings) : {};
  };
  /** Every fake k3s of this device, with what it was started with and whether the supervisor's record names it. */
  const k3sProcesses = () => {
    const record = join(dir, 'work', 'agent-process.json');
    const recorded = existsSync(record) ? (JSON.parse(readFileSync(record, 'utf8')) as { pid: number }).pid : undefined;
    return processesMatching(join(dir, 'data')).map((pid) => ({
      pid,
      recorded: pid === recorded,
      labels: existsSync(join(dir, `${pid}.json`)) ? (JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as { flags?: unknown }).flags : undefined,
    }));
  };
  /** The end of k3s's log, which says why it was not healthy when a check fails. */
  const logTail = (): string => {
    const file = join(dir, 'work', 'agent-output.log');
    if (!existsSync(file)) return '(none)';
    const text = readFileSync(file, 'utf8');
    return text.slice(-3000);
  };
  /** What the k3s the supervisor runs now was started with, from the process itself. */
  const runningK3s = () => {
    const { pid } = JSON.parse(readFileSync(join(dir, 'work', 'agent-process.json'), 'utf8')) as { pid: number };
    const argv = (JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as { argv: string[] }).argv;
    return { pid, argv, token: tokenOfArgv(argv) };
  };
  /** The device's seal key, made where the runner keeps it (its state dir) before the first run needs it. */
  const deviceKey = async () => {
    mkdirSync(join(dir, 'state'), { recursive: true });
    return (await FileSealKey.loadOrCreate(join(dir, 'state'))).key;
  };
  const healthz = async () => (await fetch(`http://127.0.0.1:${healthzPort}/healthz`, { signal: AbortSignal.timeout(5_000) })).status;

  let serial = 0;
  const changeFor = (bad: boolean): Record<string, unknown> => {
    serial += 1;
    if (bad) return { serverUrl: UNREACHABLE, labels: { zone: `bad-${serial}` }, joinToken: `K10bad${serial}::node:x` };
    return {
      labels: { zone: `z-${serial}` },
      ...(serial % 3 === 0 ? { joinToken: `K10tok${serial}::node:x` } : {}),
      ...(serial % 4 === 0 ? { taints: [`t${serial}=x:NoSchedule`] } : {}),
    };
  };

  /** One command, killed as asked (or not), then resumed by a second run; checks how it ended. */
  const iteration = async (bad: boolean, kill: { killAfterMs?: number; killAt?: string }): Promise<{ stage: string; ms: number }> => {
    const before = settingsOnDisk();
    const changes = changeFor(bad);
    const command = sealedConfigure(operator, changes, await deviceKey());
    const first = await runOnce({ command, ...kill });
    if (!first.killed) expect(first.code, first.stderr).toBe(0);
    const stage = first.killed ? stageOf(command.id) : 'not-killed';
    const second = await runOnce();
    expect(second.code, second.stderr).toBe(0);

    const results = resultsOf(command.id);
    const finals = results.filter((r) => r.status === 'succeeded' || r.status === 'failed');
    const context = `command ${serial} (${bad ? 'bad' : 'good'}), killed ${JSON.stringify(kill)} at ${stage}: ${JSON.stringify(finals)}\nk3s processes: ${JSON.stringify(k3sProcesses())}\nk3s log: ${logTail()}`;
    let expected: NodeSettings = before;
    if (stage === 'not-received') {
      expect(results, context).toEqual([]);
    } else {
      // A kill between the journal entry and the queued `accepted` loses that one progress message; the outcome stays.
      expect(results.filter((r) => r.status === 'accepted').length, context).toBeLessThanOrEqual(1);
      // The router queues the final result before it closes the journal entry: a kill in between repeats the same
      // result (at least once, never lost), so one outcome, possibly sent twice, never two different ones.
      expect(finals.length, context).toBeGreaterThanOrEqual(1);
      const outcome = bad ? { status: 'failed', reason: 'rolled_back' } : { status: 'succeeded' };
      for (const final of finals) expect(final, context).toMatchObject(outcome);
      if (!bad) expected = { ...before, ...(changes as NodeSettings) };
    }
    expect(settingsOnDisk(), context).toEqual(expected);
    const k3s = runningK3s();
    expect(k3s.argv, context).toEqual(expect.arrayContaining(['--server', expected.serverUrl ?? CONFIGURED_K3S.serverUrl]));
    if (expected.labels) expect(k3s.argv, context).toContain(`zone=${expected.labels.zone}`);
    expect(k3s.token, context).toBe(expected.joinToken ?? CONFIGURED_K3S.token);
    expect(await healthz(), context).toBe(200);
    // One k3s, the supervised one: a run killed around a restart must not leave a k3s nobody supervises. The recorded
    // pid is the `k3s init` parent that --log makes; the agent it runs is its child.
    const supervised = new Set([k3s.pid, ...descendantsOf(k3s.pid)]);
    const stray = processesMatching(join(dir, 'data')).filter((pid) => !supervised.has(pid));
    expect(stray.map((pid) => existsSync(join(dir, `${pid}.json`)) && readFileSync(join(dir, `${pid}.json`), 'utf8')), context).toEqual([]);
    return { stage, ms: first.ms };
  };

  it('SIGKILL at every step boundary: the resumed command ends applied or with exactly the previous settings', async () => {
    const boundaries: [boolean, string, string][] = [
      [false, 'apply-done', 'applying'],
      [false, 'restart-1-done', 'applied'],
      [true, 'apply-done', 'applying'],
      [true, 'restart-1-done', 'applied'],
      [true, 'revert-begin', 'reverting'],
      [true, 'revert-done', 'reverting'],
      [true, 'restart-2-done', 'reverting'],
    ];
    for (const [bad, killAt, stage] of boundaries) {
      expect((await iteration(bad, { killAt })).stage, `${bad ? 'bad' : 'good'} change killed at ${killAt}`).toBe(stage);
    }
  }, 180_000);

  it(`SIGKILL at random moments, ${ITERATIONS} times: every command ends applied or with exactly the previous settings`, async () => {
    // Whole runs, not killed, measure how long each kind takes from receipt, so that the kills spread over all of it.
    const started = Date.now();
    const span = { good: (await iteration(false, {})).ms, bad: (await iteration(true, {})).ms };
    const stages: Record<string, number> = {};
    for (let i = 0; i < ITERATIONS; i++) {
      const bad = Math.random() < BAD_SHARE;
      const kind = bad ? 'bad' : 'good';
      const { stage, ms } = await iteration(bad, { killAfterMs: Math.round(Math.random() * span[kind]) });
      // A run that ended before its kill was whole: the span was too long (the first runs are the slowest).
      if (stage === 'not-killed') span[kind] = Math.min(span[kind], ms);
      stages[stage] = (stages[stage] ?? 0) + 1;
    }
    console.log(
      `configure crash test: ${ITERATIONS} kills in ${Date.now() - started} ms; whole runs ${JSON.stringify(span)} ms from receipt; ` +
        `where the kills fell: ${JSON.stringify(stages)}`,
    );
    // Most kills must land while the command runs, or the test proves little.
    const inFlight = (stages.applying ?? 0) + (stages.applied ?? 0) + (stages.reverting ?? 0);
    expect(inFlight).toBeGreaterThanOrEqual(ITERATIONS / 2);
  }, 600_000);
});
