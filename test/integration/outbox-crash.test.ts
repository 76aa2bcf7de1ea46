import { spawn } from 'node:child_process';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATABASE_FILE } from '../../src/store/db.js';
import { ACKED_THROUGH } from '../../src/store/outbox-sql.js';
import { StatusSpool } from '../../src/store/status-spool.js';
import { ArrivalRecorder } from '../fixtures/outbox-mqtt.js';
import { waitFor } from '../helpers/wait.js';
import { mosquittoAvailable, startMosquitto, type TestBroker } from '../helpers/mosquitto.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';
import { bundleFixture } from '../helpers/bundle-fixture.js';

/**
 * SIGKILL at random moments while a real process enqueues and drains to a real broker. After every kill: the
 * database is intact, nothing the broker acknowledged (and the child deleted) is still queued, and every record
 * whose enqueue returned is either queued or arrived. At the end everything arrived, duplicates only with one id.
 */
const KILLS = 55;
const CHILD_BUNDLE = join(REPO_ROOT, 'dist/outbox-crash-child.cjs');
const TOPIC_ROOT = 'crash-test/devices/d1';

interface RunOutput {
  ready: boolean;
  empty: boolean;
  enqueued: { id: string; key: string }[];
  deleted: string[];
}

function parse(stdout: string): RunOutput {
  const out: RunOutput = { ready: false, empty: false, enqueued: [], deleted: [] };
  // A line cut by the kill has no newline yet: it never happened as far as the test is concerned.
  for (const line of stdout.split('\n').slice(0, -1)) {
    if (line === 'READY') out.ready = true;
    else if (line === 'EMPTY') out.empty = true;
    else if (line.startsWith('E ')) {
      const [, id, key] = line.split(' ');
      out.enqueued.push({ id: id!, key: key! });
    } else if (line.startsWith('D ')) out.deleted.push(...line.slice(2).split(','));
  }
  return out;
}

describe.skipIf(!mosquittoAvailable())('outbox under SIGKILL', () => {
  let broker: TestBroker;
  let state: { dir: string; cleanup: () => void };
  let spool: { dir: string; cleanup: () => void };

  beforeAll(async () => {
    await bundleFixture('outbox-crash-child.ts', CHILD_BUNDLE);
    broker = await startMosquitto({ globalLines: ['max_queued_messages 0'] });
    state = tempDir('fleetlet-outbox-crash-');
    spool = tempDir('fleetlet-outbox-crash-spool-', '/dev/shm');
  });
  afterAll(async () => {
    await broker?.close();
    state?.cleanup();
    spool?.cleanup();
  });

  function runChild(run: number, mode: 'run' | 'finish', killAfter?: { afterReady: boolean; ms: number }) {
    const child = spawn(process.execPath, [CHILD_BUNDLE], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH,
        CRASH_STATE_DIR: state.dir,
        CRASH_SPOOL_DIR: spool.dir,
        CRASH_BROKER_URL: broker.url,
        CRASH_TOPIC_ROOT: TOPIC_ROOT,
        CRASH_RUN: String(run),
        CRASH_MODE: mode,
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      // "While working" counts from the first enqueue, not from READY: on a loaded machine the work may start late.
      if (killAfter?.afterReady && stdout.startsWith('READY\n') && stdout.includes('\nE ')) {
        killAfter.afterReady = false;
        setTimeout(() => child.kill('SIGKILL'), killAfter.ms);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    if (killAfter && !killAfter.afterReady) setTimeout(() => child.kill('SIGKILL'), killAfter.ms);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    // Bounded: a child that neither dies nor finishes fails the test instead of hanging it.
    const guard = setTimeout(() => child.kill('SIGKILL'), mode === 'finish' ? 60_000 : 10_000);
    return exited.then((exit) => {
      clearTimeout(guard);
      return { ...exit, output: parse(stdout), stderr };
    });
  }

  /** Kills after which acknowledged rows were still stored below the mark, for the next start to delete. */
  let killedWithAcknowledgedRows = 0;

  /** In the database, or in the RAM spool of status samples (which the next start commits). */
  function queuedIds(): Set<string> {
    const spooled = new StatusSpool(spool.dir).recover(1 << 16, (file, err) => expect.fail(`spool file ${file}: ${String(err)}`));
    const ids = new Set(spooled.map((record) => record.queued.messageId));
    const db = new BetterSqlite3(join(state.dir, DATABASE_FILE));
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const hasOutbox = db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'outbox'").get() !== undefined;
      if (!hasOutbox) return ids;
      // Rows at or below the acknowledged mark are deleted as far as the outbox is concerned (outbox-ack-mark.ts); the
      // next start deletes those still stored.
      const mark = db.prepare('SELECT value FROM outbox_counters WHERE name = ?').pluck().get(ACKED_THROUGH) ?? 0;
      if (db.prepare('SELECT 1 FROM outbox WHERE seq <= ?').get(mark)) killedWithAcknowledgedRows++;
      for (const { message_id } of db.prepare('SELECT message_id FROM outbox WHERE seq > ?').all(mark) as { message_id: string }[]) ids.add(message_id);
      return ids;
    } finally {
      db.close();
    }
  }

  it(`loses nothing across ${KILLS} kills at random moments`, { timeout: 150_000 }, async () => {
    const arrivals = await ArrivalRecorder.start(broker.url, `${TOPIC_ROOT}/#`);
    const enqueued = new Map<string, string>(); // messageId -> key
    let killedWhileWorking = 0;
    try {
      for (let run = 0; run < KILLS; run++) {
        // A third of the kills land anywhere (also while opening and migrating), the rest while working.
        const afterReady = run % 3 !== 0;
        const ms = afterReady ? Math.floor(Math.random() * 400) : 20 + Math.floor(Math.random() * 300);
        const result = await runChild(run, 'run', { afterReady, ms });
        expect(result.signal, result.stderr).toBe('SIGKILL');
        if (result.output.enqueued.length > 0) killedWhileWorking++;
        for (const { id, key } of result.output.enqueued) enqueued.set(id, key);

        const queued = queuedIds();
        for (const id of result.output.deleted) expect(queued.has(id), `deleted ${id} is still queued`).toBe(false);
        // Every record whose enqueue returned is queued, or the broker took it (the subscriber sees it shortly).
        const missing = () => {
          const arrived = arrivals.ids();
          return [...enqueued.keys()].filter((id) => !queued.has(id) && !arrived.has(id));
        };
        await waitFor(() => missing().length === 0, `records neither queued nor arrived: ${missing().slice(0, 5).join(', ')}`, 10_000);
      }
      expect(killedWhileWorking).toBeGreaterThan(KILLS / 2);
      // The kills must also hit the acknowledged mark mid-drain, so that the starts after them delete those rows.
      expect(killedWithAcknowledgedRows).toBeGreaterThan(0);

      const finish = await runChild(KILLS, 'finish');
      expect(finish.output.empty, finish.stderr).toBe(true);
      expect(finish.code).toBe(0);
      expect(queuedIds().size).toBe(0);
      const allArrived = () => {
        const arrived = arrivals.ids();
        return [...enqueued.keys()].every((id) => arrived.has(id));
      };
      await waitFor(allArrived, 'every record at the subscriber', 15_000);

      // A duplicate is the same record sent again: same key, same id. Never a second id for one key.
      const idsByKey = new Map<string, Set<string>>();
      for (const arrival of arrivals.arrivals) {
        const key = String(arrival.body.key);
        idsByKey.set(key, (idsByKey.get(key) ?? new Set()).add(arrival.body.messageId));
      }
      for (const [key, ids] of idsByKey) expect(ids.size, `key ${key}`).toBe(1);
      for (const [id, key] of enqueued) expect(idsByKey.get(key)).toEqual(new Set([id]));
      console.log(
        `crash test: ${KILLS} kills, ${enqueued.size} records acknowledged as enqueued, ${arrivals.arrivals.length} arrivals ` +
          `(${arrivals.arrivals.length - arrivals.ids().size} duplicates, same ids); ${killedWithAcknowledgedRows} kills left ` +
          'acknowledged rows below the mark',
      );
    } finally {
      await arrivals.close();
    }
  });
});
