import { existsSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { DATABASE_FILE, openDatabase } from '../../src/store/db.js';
import { MIGRATIONS, LATEST_SCHEMA_VERSION } from '../../src/store/migrations.js';
import { EventLog } from '../../src/store/event-log.js';
import { DatabaseTooNewError, isFatal } from '../../src/lib/errors.js';
import { tempDir } from '../helpers/paths.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startCli, waitFor } from '../helpers/cli.js';

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((fn) => fn()));
function stateDir(): string {
  const { dir, cleanup } = tempDir('fleetlet-db-');
  cleanups.push(cleanup);
  return join(dir, 'state');
}
const open = (dir: string, migrations = MIGRATIONS) =>
  openDatabase({ stateDir: dir, fleetletVersion: 'test', migrations, now: () => new Date('2026-11-22T08:00:00Z') });

describe('state database', () => {
  it('creates a private state dir and a WAL database at the latest schema version', () => {
    const dir = stateDir();
    const { db, file, migratedFrom, recovered } = open(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(migratedFrom).toBe(0);
    expect(recovered).toBeUndefined();
    const versions = db.prepare('SELECT version FROM schema_version ORDER BY version').pluck().all();
    expect(versions).toEqual(MIGRATIONS.map((m) => m.version));
    db.close();
  });

  it('numbers migrations 1..N without gaps', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(Array.from({ length: LATEST_SCHEMA_VERSION }, (_, i) => i + 1));
  });

  // A device in the field can be at any earlier version when it receives a new fleetlet.
  it.each(Array.from({ length: LATEST_SCHEMA_VERSION }, (_, from) => from))(
    'migrates a database from version %i to the latest and keeps its data',
    (from) => {
      const dir = stateDir();
      const old = open(dir, MIGRATIONS.slice(0, from));
      if (from >= 1) old.db.prepare("INSERT INTO kv (key, value, updated_at) VALUES ('boot', '7', 1)").run();
      old.db.close();

      const { db, migratedFrom } = open(dir);
      expect(migratedFrom).toBe(from);
      expect(db.prepare('SELECT MAX(version) FROM schema_version').pluck().get()).toBe(LATEST_SCHEMA_VERSION);
      if (from >= 1) expect(db.prepare("SELECT value FROM kv WHERE key = 'boot'").pluck().get()).toBe('7');
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      db.close();
    },
  );

  it('refuses a database written by a newer fleetlet and leaves it untouched', () => {
    const dir = stateDir();
    const first = open(dir);
    first.db.prepare('INSERT INTO schema_version VALUES (?, ?, ?)').run(LATEST_SCHEMA_VERSION + 1, Date.now(), 'future');
    first.db.close();
    const before = readFileSync(join(dir, DATABASE_FILE));

    let error: unknown;
    try {
      open(dir);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(DatabaseTooNewError);
    expect(isFatal(error)).toBe(true);
    expect((error as Error).message).toContain(`schema version ${LATEST_SCHEMA_VERSION + 1}`);
    expect(readFileSync(join(dir, DATABASE_FILE)).equals(before)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
  });

  const corruptions: [string, (file: string) => void][] = [
    ['garbage bytes', (file) => writeFileSync(file, Buffer.alloc(8192, 0x5a))],
    ['a truncated file', (file) => truncateSync(file, 1500)],
    [
      'a damaged page inside an otherwise valid file',
      (file) => {
        const bytes = readFileSync(file);
        bytes.fill(0xff, 4096 + 8, 4096 + 400); // page 2, past its header
        writeFileSync(file, bytes);
      },
    ],
  ];

  it.each(corruptions)('moves %s aside, starts fresh and records the event', (_name, damage) => {
    const dir = stateDir();
    const first = open(dir);
    const events = new EventLog(first.db);
    for (let i = 0; i < 200; i++) events.record('filler', { i, text: 'x'.repeat(200) });
    first.db.pragma('wal_checkpoint(TRUNCATE)');
    first.db.close();
    damage(join(dir, DATABASE_FILE));

    const reopened = open(dir);
    expect(reopened.recovered?.movedTo).toBe(join(dir, `${DATABASE_FILE}.corrupt-2026-11-22T08-00-00-000Z`));
    expect(existsSync(reopened.recovered!.movedTo)).toBe(true);
    expect(reopened.db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(reopened.db.prepare('SELECT COUNT(*) FROM event_log').pluck().get()).toBe(0);
    reopened.db.close();
  });

  it('records the recovery in the fresh database when the agent starts on a corrupt file', async () => {
    const dir = stateDir();
    const config = writeAgentConfig(join(dir, '..'), { stateDir: dir });
    open(dir).db.close();
    writeFileSync(join(dir, DATABASE_FILE), 'not a database at all, just text '.repeat(300));
    const agent = startCli(['agent', '--config', config]);
    await waitFor(() => agent.output().includes('fleetlet agent running'), 'the agent to run');
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(agent.output()).toContain('state database was unreadable');
    const db = new BetterSqlite3(join(dir, DATABASE_FILE), { readonly: true });
    const kinds = db.prepare('SELECT kind FROM event_log').pluck().all();
    db.close();
    expect(kinds).toContain('state.database_recovered');
  });
});
