import { copyFileSync, existsSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DatabaseTooNewError } from '../../src/lib/errors.js';
import { DATABASE_FILE, openDatabase, type Database } from '../../src/store/db.js';
import { MIGRATIONS, type Migration } from '../../src/store/migrations.js';
import { REVERTED_FILE, restoreSnapshot, snapshotDatabase, snapshotPath } from '../../src/store/snapshot.js';
import { tempDir } from '../helpers/paths.js';

function stateDir(): string {
  const { dir, cleanup } = tempDir('fleetlet-snapshot-');
  onTestFinished(cleanup);
  return join(dir, 'state');
}
const open = (dir: string, migrations: readonly Migration[] = MIGRATIONS) => openDatabase({ stateDir: dir, fleetletVersion: 'test', migrations }).db;

/** A newer build's migration, as a release would add it: one more journal column and a table of its own. */
const newer = (extra: string): Migration[] => [
  ...MIGRATIONS,
  { version: MIGRATIONS.length + 1, description: 'newer build (test)', up: (db) => db.exec(`CREATE TABLE newer_only (note TEXT) STRICT; ${extra}`) },
];

function journalRow(db: Database, id: string, state = 'succeeded'): void {
  db.prepare(
    `INSERT INTO command_journal (command_id, type, key_id, received_at, expires_at, state, command, step, outcome, updated_at)
     VALUES (?, 'ping', 'ops', 1, 9999999999999, ?, '{}', NULL, NULL, 1)`,
  ).run(id, state);
}
const ids = (db: Database) => db.prepare('SELECT command_id FROM command_journal ORDER BY command_id').pluck().all();
const kv = (db: Database, key: string) => db.prepare('SELECT value FROM kv WHERE key = ?').pluck().get(key);
const setKv = (db: Database, key: string, value: string) =>
  db.prepare('INSERT INTO kv (key, value, updated_at) VALUES (?, ?, 1) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);

describe('state database snapshot for a self-update', () => {
  it('after a revert, the old schema opens the database again, with the journal and state the trial wrote', async () => {
    const dir = stateDir();
    const before = open(dir);
    journalRow(before, 'cmd-before-upgrade', 'running');
    setKv(before, 'boot.sequence', '7');
    await snapshotDatabase(before, dir);
    before.close();

    // The new build on trial migrates and keeps working: it accepts a command and counts a boot.
    const trial = open(dir, newer('ALTER TABLE command_journal ADD COLUMN cancelled_by TEXT;'));
    journalRow(trial, 'cmd-during-trial');
    setKv(trial, 'boot.sequence', '8');
    trial.prepare("INSERT INTO newer_only (note) VALUES ('x')").run();
    trial.close();
    // What the old binary met before this existed: a database it refuses, so it could never come back.
    expect(() => open(dir)).toThrow(DatabaseTooNewError);

    const report = await restoreSnapshot(dir);
    expect(report?.salvaged).toEqual(expect.arrayContaining(['command_journal', 'kv', 'outbox', 'event_log']));
    const after = open(dir);
    expect(after.prepare('SELECT MAX(version) FROM schema_version').pluck().get()).toBe(MIGRATIONS.length);
    expect(ids(after)).toEqual(['cmd-before-upgrade', 'cmd-during-trial']);
    expect(kv(after, 'boot.sequence')).toBe('8');
    expect(after.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'newer_only'").pluck().get()).toBe(0);
    after.close();
    expect(existsSync(snapshotPath(dir))).toBe(false);
    // The trial's own database is kept beside it, whole, for a post-mortem.
    const kept = new BetterSqlite3(join(dir, REVERTED_FILE), { readonly: true });
    expect(kept.prepare('SELECT MAX(version) FROM schema_version').pluck().get()).toBe(MIGRATIONS.length + 1);
    kept.close();
    // Done once: a second run finds no snapshot and changes nothing.
    expect(await restoreSnapshot(dir)).toBeUndefined();
  });

  it('a table the newer schema changed beyond the old columns keeps the snapshot rows; the others are salvaged', async () => {
    const dir = stateDir();
    const before = open(dir);
    setKv(before, 'note', 'from the snapshot');
    await snapshotDatabase(before, dir);
    before.close();
    const trial = open(dir, newer('ALTER TABLE kv DROP COLUMN updated_at;'));
    trial.prepare("INSERT INTO kv (key, value) VALUES ('note-new', 'written by the trial')").run();
    journalRow(trial, 'cmd-during-trial');
    trial.close();

    const report = await restoreSnapshot(dir);
    expect(report?.fromSnapshot).toEqual(['kv']);
    expect(report?.salvaged).toContain('command_journal');
    const after = open(dir);
    expect(kv(after, 'note')).toBe('from the snapshot');
    expect(kv(after, 'note-new')).toBeUndefined();
    expect(ids(after)).toEqual(['cmd-during-trial']);
    after.close();
  });

  it.each(['after moving the trial database aside', 'after the merged file took its name'])(
    'a restore cut short %s finishes with the trial rows on the next run',
    async (cut) => {
      const dir = stateDir();
      const before = open(dir);
      await snapshotDatabase(before, dir);
      before.close();
      const trial = open(dir, newer(''));
      journalRow(trial, 'cmd-during-trial');
      trial.close();
      const file = join(dir, DATABASE_FILE);
      if (cut === 'after moving the trial database aside') {
        for (const suffix of ['-wal', '-shm', '']) if (existsSync(file + suffix)) renameSync(file + suffix, join(dir, REVERTED_FILE) + suffix);
        writeFileSync(`${file}.restoring`, 'half a copy');
      } else {
        const snapshot = snapshotPath(dir);
        copyFileSync(snapshot, `${snapshot}.keep`);
        await restoreSnapshot(dir);
        renameSync(`${snapshot}.keep`, snapshot);
      }
      const report = await restoreSnapshot(dir);
      expect(report?.salvaged).toContain('command_journal');
      const after = open(dir);
      expect(ids(after)).toEqual(['cmd-during-trial']);
      after.close();
    },
  );
});
