import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { openDatabase, type Database } from '../../src/store/db.js';
import { EventLog } from '../../src/store/event-log.js';
import { ConfigSchema } from '../../src/config/schema.js';
import { tempDir } from '../helpers/paths.js';


function database(): Database {
  const { dir, cleanup } = tempDir('fleetlet-event-log-');
  const { db } = openDatabase({ stateDir: join(dir, 'state'), fleetletVersion: 'test' });
  onTestFinished(() => {
    db.close();
    cleanup();
  });
  return db;
}

const count = (db: Database) => db.prepare('SELECT COUNT(*) FROM event_log').pluck().get() as number;
const bytes = (db: Database) =>
  db.prepare('SELECT SUM(length(CAST(kind AS BLOB)) + length(CAST(detail AS BLOB))) FROM event_log').pluck().get() as number;
/** What the k3s supervisor records when k3s exits: its last 20 log lines. */
const k3sDown = (i: number) => ({ code: 0, signal: null, i, lastLines: Array.from({ length: 20 }, (_, n) => `line ${n} `.padEnd(200, 'x')) });

describe('local event log', () => {
  it('has limits by default that suit an SD card', () => {
    expect(ConfigSchema.parse({ broker: { url: 'mqtts://b.example:8883' } }).limits.eventLog).toEqual({ maxRows: 2000, maxBytes: 2 * 1024 * 1024 });
  });

  it('keeps at most maxRows entries, the newest, dropping the oldest first', () => {
    const db = database();
    const log = new EventLog(db, { maxRows: 100, maxBytes: 1 << 30 });
    for (let i = 0; i < 1000; i++) log.record('k3s.crash-loop', { i });
    expect(count(db)).toBeLessThanOrEqual(100);
    const kept = log.recent(1000).map((e) => e.detail.i as number);
    expect(kept[0]).toBe(999);
    // Contiguous from the newest down: nothing in between was lost, only the oldest went.
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, n) => 999 - n));
  });

  it('keeps at most maxBytes, counting the log lines that k3s events carry', () => {
    const db = database();
    const maxBytes = 64 * 1024;
    const log = new EventLog(db, { maxRows: 1_000_000, maxBytes });
    for (let i = 0; i < 500; i++) {
      log.record('k3s.down', k3sDown(i));
      expect(bytes(db)).toBeLessThanOrEqual(maxBytes);
    }
    expect(log.recent(1)[0]?.detail.i).toBe(499);
    expect(count(db)).toBeGreaterThan(10);
  });

  it('trims in batches down to 90% of the limit, not on every record', () => {
    const db = database();
    const log = new EventLog(db, { maxRows: 100, maxBytes: 1 << 30 });
    for (let i = 0; i < 101; i++) log.record('disk.low', { i });
    expect(count(db)).toBe(90);
    for (let i = 0; i < 10; i++) log.record('disk.low', { i });
    expect(count(db)).toBe(100);
  });

  it('bounds a log that was already too large when it is opened (a database from before the limit)', () => {
    const db = database();
    const unbounded = new EventLog(db, { maxRows: 1_000_000, maxBytes: 1 << 30 });
    for (let i = 0; i < 3000; i++) unbounded.record('k3s.down', { i });
    expect(count(db)).toBe(3000);
    new EventLog(db, { maxRows: 2000, maxBytes: 1 << 30 });
    expect(count(db)).toBe(1800);
  });

  it('keeps the newest entry even when it alone is over the byte limit', () => {
    const db = database();
    const log = new EventLog(db, { maxRows: 100, maxBytes: 4096 });
    log.record('small', { i: 1 });
    log.record('huge', { text: 'y'.repeat(10_000) });
    expect(log.recent(10).map((e) => e.kind)).toEqual(['huge']);
  });
});
