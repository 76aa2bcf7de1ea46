import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { DATABASE_FILE, openDatabase } from '../../src/store/db.js';
import type { NewOutboxRecord, OutboxClass } from '../../src/store/outbox.js';
import { SqliteOutbox } from '../../src/store/sqlite-outbox.js';
import { StatusSpool, statusSpoolDir } from '../../src/store/status-spool.js';
import { testLimits } from '../fixtures/outbox-setup.js';
import { tempDir } from '../helpers/paths.js';

function rec(cls: OutboxClass, n: number): NewOutboxRecord {
  return { class: cls, topic: `t/devices/d1/${cls}`, payload: { n } };
}

/** A real state database and a spool in /dev/shm (RAM), as the agent has them. */
function setup() {
  const state = tempDir('fleetlet-spool-state-');
  const spool = tempDir('fleetlet-spool-', '/dev/shm');
  let clock = 1_000_000;
  const open = () => {
    const { db } = openDatabase({ stateDir: state.dir, fleetletVersion: 'test' });
    const outbox = new SqliteOutbox(db, { limits: testLimits(), statusSpool: new StatusSpool(spool.dir), now: () => clock });
    return { db, outbox };
  };
  /** Rows in the outbox table, read by a second connection as another process would. */
  const storedRows = () => {
    const db = new BetterSqlite3(join(state.dir, DATABASE_FILE), { readonly: true });
    try {
      return (db.prepare('SELECT class, body FROM outbox ORDER BY seq').all() as { class: string; body: string }[]).map((row) => ({
        class: row.class,
        n: (JSON.parse(row.body) as { n: number }).n,
      }));
    } finally {
      db.close();
    }
  };
  const walBytes = () => statSync(join(state.dir, `${DATABASE_FILE}-wal`)).size;
  return {
    state,
    spool,
    open,
    storedRows,
    walBytes,
    advance: (ms: number) => (clock += ms),
    cleanup: () => {
      state.cleanup();
      spool.cleanup();
    },
  };
}

describe('status waits in a RAM spool before the database', () => {
  let env: ReturnType<typeof setup> | undefined;
  const dbs: BetterSqlite3.Database[] = [];
  afterEach(() => {
    for (const db of dbs.splice(0)) if (db.open) db.close();
    env?.cleanup();
    env = undefined;
  });
  const start = () => {
    env = setup();
    const opened = env.open();
    dbs.push(opened.db);
    return { env, ...opened };
  };

  it('a status acknowledged by the broker is never written to the database', () => {
    const { env, outbox } = start();
    const walBefore = env.walBytes();
    const record = outbox.enqueue(rec('status', 1));
    expect(outbox.pending(0, 10).map((r) => r.messageId)).toEqual([record.messageId]);
    expect(outbox.latest('status')?.messageId).toBe(record.messageId);
    expect(readdirSync(env.spool.dir)).toEqual([`${record.seq}.json`]);
    expect(outbox.acknowledge([record.seq])).toBe(1);
    expect(readdirSync(env.spool.dir)).toEqual([]);
    expect(env.storedRows()).toEqual([]);
    expect(env.walBytes()).toBe(walBefore);
    expect(outbox.stats().rows.status).toBe(0);
  });

  it('events and results still commit at enqueue, and pending merges them with spooled status in seq order', () => {
    const { env, outbox } = start();
    outbox.enqueue(rec('status', 1));
    outbox.enqueue(rec('event', 2));
    outbox.enqueue(rec('status', 3));
    outbox.enqueue(rec('result', 4));
    expect(env.storedRows()).toEqual([
      { class: 'event', n: 2 },
      { class: 'result', n: 4 },
    ]);
    expect(outbox.pending(0, 10).map((r) => (JSON.parse(r.body) as { n: number }).n)).toEqual([1, 2, 3, 4]);
    expect(outbox.pending(1, 2).map((r) => (JSON.parse(r.body) as { n: number }).n)).toEqual([2, 3]);
    expect(outbox.stats().rows).toEqual({ status: 2, event: 1, result: 1 });
  });

  it('twenty unacknowledged samples reach the database together, in one commit', () => {
    const { env, outbox } = start();
    for (let n = 1; n <= 19; n++) outbox.enqueue(rec('status', n));
    expect(env.storedRows()).toEqual([]);
    outbox.enqueue(rec('status', 20));
    expect(env.storedRows().map((row) => row.n)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(readdirSync(env.spool.dir)).toEqual([]);
    expect(outbox.pending(0, 100)).toHaveLength(20);
  });

  it('a sample not acknowledged within ten minutes reaches the database with the next one', () => {
    const { env, outbox } = start();
    outbox.enqueue(rec('status', 1));
    env.advance(9 * 60_000);
    outbox.enqueue(rec('status', 2));
    expect(env.storedRows()).toEqual([]);
    env.advance(60_000);
    outbox.enqueue(rec('status', 3));
    expect(env.storedRows().map((row) => row.n)).toEqual([1, 2, 3]);
  });

  it('the next start commits what a killed process left in the spool, after everything stored, ids unchanged', () => {
    const { env, db, outbox } = start();
    outbox.enqueue(rec('event', 1));
    const spooled = [outbox.enqueue(rec('status', 2)), outbox.enqueue(rec('status', 3))];
    db.close(); // no flush: as after a SIGKILL
    const next = env.open();
    dbs.push(next.db);
    expect(env.storedRows()).toEqual([
      { class: 'event', n: 1 },
      { class: 'status', n: 2 },
      { class: 'status', n: 3 },
    ]);
    expect(readdirSync(env.spool.dir)).toEqual([]);
    const pending = next.outbox.pending(0, 10);
    expect(pending.slice(1).map((r) => r.messageId)).toEqual(spooled.map((r) => r.messageId));
    expect(next.outbox.enqueue(rec('status', 4)).seq).toBeGreaterThan(pending.at(-1)!.seq);
  });

  it('spooled samples stay counted when the totals are read again after a caller rolled back', () => {
    const { db, outbox } = start();
    outbox.enqueue(rec('status', 1));
    expect(() =>
      db.transaction(() => {
        outbox.enqueue(rec('event', 2));
        throw new Error('caller fails after enqueueing');
      })(),
    ).toThrow('caller fails');
    expect(outbox.stats().rows).toEqual({ status: 1, event: 0, result: 0 });
  });

  it('a clean stop commits the spool and removes its directory', () => {
    const { env, outbox } = start();
    outbox.enqueue(rec('status', 1));
    outbox.flushStatusSpool();
    expect(env.storedRows()).toEqual([{ class: 'status', n: 1 }]);
    expect(existsSync(env.spool.dir)).toBe(false);
  });

  it('spooled samples count against the status budget and the oldest are shed first', () => {
    env = setup();
    const { db } = openDatabase({ stateDir: env.state.dir, fleetletVersion: 'test' });
    dbs.push(db);
    const outbox = new SqliteOutbox(db, {
      limits: testLimits({ budgets: { status: { maxRows: 3, maxBytes: 1 << 20 } } }),
      statusSpool: new StatusSpool(env.spool.dir),
    });
    for (let n = 1; n <= 5; n++) outbox.enqueue(rec('status', n));
    expect(outbox.pending(0, 10).map((r) => (JSON.parse(r.body) as { n: number }).n)).toEqual([3, 4, 5]);
    expect(outbox.stats()).toMatchObject({ rows: { status: 3 }, dropped: { status: 2 } });
    expect(readdirSync(env.spool.dir)).toHaveLength(3);
  });

  it('the spool is used only in RAM: a directory on disk gives none', () => {
    const onDisk = tempDir('fleetlet-spool-disk-');
    try {
      expect(statusSpoolDir(onDisk.dir, '/var/lib/fleetlet')).toBeUndefined();
      const inRam = statusSpoolDir('/dev/shm', '/var/lib/fleetlet');
      expect(inRam).toMatch(/^\/dev\/shm\/status-spool-[0-9a-f]{16}$/);
      expect(statusSpoolDir('/dev/shm', '/srv/other-state')).not.toBe(inRam);
    } finally {
      onDisk.cleanup();
    }
  });
});
