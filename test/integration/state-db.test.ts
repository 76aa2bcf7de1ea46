import { existsSync, readdirSync, readFileSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DATABASE_FILE, openDatabase } from '../../src/store/db.js';
import { MIGRATIONS, LATEST_SCHEMA_VERSION } from '../../src/store/migrations.js';
import { EventLog } from '../../src/store/event-log.js';
import { CommandJournal } from '../../src/commands/journal.js';
import type { Command } from '../../src/protocol/command.js';
import { signedCommand, testKey } from '../fixtures/command-keys.js';
import { DatabaseTooNewError, isFatal } from '../../src/lib/errors.js';
import { tempDir } from '../helpers/paths.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startCli } from '../helpers/cli.js';
import { startTestBroker } from '../helpers/mosquitto.js';
import { Observer } from '../helpers/observer.js';
import { EventSchema, isEventKind, type FleetEvent } from '../../src/protocol/event.js';

/** The defaults of limits.eventLog. */
const EVENT_LOG_LIMITS = { maxRows: 2000, maxBytes: 2 * 1024 * 1024 };

const operator = testKey('ops');
function stateDir(): string {
  const { dir, cleanup } = tempDir('fleetlet-db-');
  onTestFinished(cleanup);
  return join(dir, 'state');
}
/** A last write before the clock of open(): the recovery time is then the horizon. */
const BEFORE_NOW = new Date('2026-11-21T08:00:00Z');
const open = (dir: string, migrations = MIGRATIONS) =>
  openDatabase({ stateDir: dir, fleetletVersion: 'test', migrations, now: () => new Date('2026-11-22T08:00:00Z') });

/** Per schema version (index = version - 1): rows written by that version and how they must read back at the latest. */
const rowsOfEveryTable = [
  {
    insert: `INSERT INTO kv (key, value, updated_at) VALUES ('boot', '7', 1);`,
    check: `SELECT key, value FROM kv WHERE key = 'boot'`,
    expected: [{ key: 'boot', value: '7' }],
  },
  {
    insert: `INSERT INTO outbox (seq, message_id, class, topic, body, qos, retain, created_at, bytes)
             VALUES (41, 'm-41', 'event', 'fleetlet/v1/devices/d/events', '{"kind":"disk.low"}', 1, 0, 5, 19)`,
    check: 'SELECT seq, message_id, class, body, bytes FROM outbox',
    expected: [{ seq: 41, message_id: 'm-41', class: 'event', body: '{"kind":"disk.low"}', bytes: 19 }],
  },
  {
    insert: `INSERT INTO command_journal (command_id, type, key_id, received_at, expires_at, state, command, step, outcome, updated_at)
             VALUES ('cmd-1', 'k3s.upgrade', 'ops', 10, 20, 'running', '{"id":"cmd-1"}', '{"state":"swapped"}', NULL, 11)`,
    check: 'SELECT command_id, state, command, step, expires_at FROM command_journal',
    expected: [{ command_id: 'cmd-1', state: 'running', command: '{"id":"cmd-1"}', step: '{"state":"swapped"}', expires_at: 20 }],
  },
];

const command = (id: string, issuedAt: number): Command => {
  const { sig, ...rest } = signedCommand(operator, { id, issuedAt });
  return { ...rest, sig, type: 'ping', args: {} };
};

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

  it('has a row of every schema version in the migration test below', () => {
    expect(rowsOfEveryTable).toHaveLength(LATEST_SCHEMA_VERSION);
  });

  // A device in the field can be at any earlier version when it receives a new fleetlet.
  it.each(Array.from({ length: LATEST_SCHEMA_VERSION }, (_, from) => from))(
    'migrates a database from version %i to the latest and keeps its data',
    (from) => {
      const dir = stateDir();
      const old = open(dir, MIGRATIONS.slice(0, from));
      // One row in every table the old version has, each checked below: a migration must carry all of them.
      const rows = rowsOfEveryTable.slice(0, from);
      for (const { insert } of rows) old.db.prepare(insert).run();
      old.db.close();

      const { db, migratedFrom } = open(dir);
      expect(migratedFrom).toBe(from);
      expect(db.prepare('SELECT MAX(version) FROM schema_version').pluck().get()).toBe(LATEST_SCHEMA_VERSION);
      for (const { check, expected } of rows) expect(db.prepare(check).all()).toEqual(expected);
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
    const events = new EventLog(first.db, EVENT_LOG_LIMITS);
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

  it('salvages the command journal from a file damaged elsewhere and sets the replay horizon', () => {
    const dir = stateDir();
    const first = open(dir);
    const journal = new CommandJournal(first.db);
    const now = Date.now();
    journal.begin(command('cmd-done', now), now);
    journal.finish('cmd-done', 'succeeded', 'pong', now);
    journal.begin(command('cmd-running', now), now);
    const events = new EventLog(first.db, EVENT_LOG_LIMITS);
    for (let i = 0; i < 300; i++) events.record('filler', { i, text: 'x'.repeat(200) });
    first.db.pragma('wal_checkpoint(TRUNCATE)');
    first.db.close();
    // The last page belongs to the event log, written last; the journal's pages stay readable.
    const file = join(dir, DATABASE_FILE);
    const bytes = readFileSync(file);
    bytes.fill(0xff, bytes.length - 4096 + 8, bytes.length - 100);
    writeFileSync(file, bytes);
    utimesSync(file, BEFORE_NOW, BEFORE_NOW);

    const reopened = open(dir);
    expect(reopened.recovered).toMatchObject({ journalRowsSalvaged: 2, copiesRemoved: 0 });
    const salvaged = new CommandJournal(reopened.db);
    expect(salvaged.get('cmd-done')).toMatchObject({ state: 'succeeded', outcome: 'pong' });
    expect(salvaged.running().map((e) => e.commandId)).toEqual(['cmd-running']);
    expect(salvaged.replayHorizon()).toBe(Date.parse('2026-11-22T08:00:00Z'));
    reopened.db.close();
  });

  it('salvages the journal rows around a damaged page of the journal itself', () => {
    const dir = stateDir();
    const first = open(dir);
    const journal = new CommandJournal(first.db);
    const now = Date.now();
    // Entries with a long step: a few per page, so that the journal spans many pages.
    first.db.transaction(() => {
      for (let i = 0; i < 400; i++) {
        const id = `cmd-${String(i).padStart(4, '0')}`;
        journal.begin(command(id, now), now);
        journal.saveStep(id, { state: 'downloading', pad: 'p'.repeat(400) }, false, now);
      }
    })();
    const leaves = first.db
      .prepare("SELECT pageno FROM dbstat WHERE name = 'command_journal' AND pagetype = 'leaf' ORDER BY pageno")
      .pluck()
      .all() as number[];
    const pageSize = Number(first.db.pragma('page_size', { simple: true }));
    first.db.pragma('wal_checkpoint(TRUNCATE)');
    first.db.close();
    expect(leaves.length).toBeGreaterThan(20);
    const damaged = leaves[Math.floor(leaves.length / 2)]!;
    const file = join(dir, DATABASE_FILE);
    const bytes = readFileSync(file);
    bytes.fill(0xff, (damaged - 1) * pageSize, damaged * pageSize);
    writeFileSync(file, bytes);

    const reopened = open(dir);
    const salvaged = reopened.recovered!.journalRowsSalvaged;
    // Only the rows of the damaged page are lost, not every row the table scan would have reached after it.
    expect(salvaged).toBeLessThan(400);
    expect(salvaged).toBeGreaterThanOrEqual(400 - 400 / leaves.length - 5);
    expect(new CommandJournal(reopened.db).get('cmd-0399')).toBeDefined();
    reopened.db.close();
  });

  it('sets the replay horizon also when nothing of the journal can be read', () => {
    const dir = stateDir();
    const first = open(dir);
    new CommandJournal(first.db).begin(command('cmd-lost', Date.now()), Date.now());
    first.db.close();
    writeFileSync(join(dir, DATABASE_FILE), Buffer.alloc(8192, 0x5a));
    utimesSync(join(dir, DATABASE_FILE), BEFORE_NOW, BEFORE_NOW);

    const reopened = open(dir);
    expect(reopened.recovered?.journalRowsSalvaged).toBe(0);
    expect(new CommandJournal(reopened.db).replayHorizon()).toBe(Date.parse('2026-11-22T08:00:00Z'));
    reopened.db.close();
  });

  it('puts the replay horizon at the last write of the unreadable file when the clock is behind it', () => {
    const dir = stateDir();
    open(dir).db.close();
    const file = join(dir, DATABASE_FILE);
    writeFileSync(file, Buffer.alloc(8192, 0x5a));
    // Written "tomorrow" by the clock of that time; the board now boots with the fixed, earlier time of open().
    const lastWrite = new Date('2026-11-23T09:30:00Z');
    utimesSync(file, lastWrite, lastWrite);
    const reopened = open(dir);
    expect(new CommandJournal(reopened.db).replayHorizon()).toBe(lastWrite.getTime());
    reopened.db.close();
  });

  it('keeps the two newest moved-aside copies, with their side files, however often it recovers', () => {
    const dir = stateDir();
    const file = join(dir, DATABASE_FILE);
    open(dir).db.close();
    const removed: number[] = [];
    for (let day = 1; day <= 4; day++) {
      writeFileSync(file, Buffer.alloc(8192, 0x5a));
      const now = () => new Date(`2026-11-0${day}T08:00:00Z`);
      const opened = openDatabase({ stateDir: dir, fleetletVersion: 'test', now });
      removed.push(opened.recovered!.copiesRemoved);
      opened.db.close();
      // As if a WAL had been moved aside with it (SQLite itself drops a WAL of garbage when it closes the file).
      writeFileSync(`${opened.recovered!.movedTo}-wal`, 'wal');
    }
    expect(removed).toEqual([0, 0, 1, 1]);
    const aside = readdirSync(dir).filter((name) => name.includes('.corrupt-')).sort();
    expect(aside).toEqual([
      `${DATABASE_FILE}.corrupt-2026-11-03T08-00-00-000Z`,
      `${DATABASE_FILE}.corrupt-2026-11-03T08-00-00-000Z-wal`,
      `${DATABASE_FILE}.corrupt-2026-11-04T08-00-00-000Z`,
      `${DATABASE_FILE}.corrupt-2026-11-04T08-00-00-000Z-wal`,
    ]);
  });

  it('records the recovery locally and reports it to the fleet when the agent starts on a corrupt file', async () => {
    const dir = stateDir();
    const broker = await startTestBroker();
    onTestFinished(() => broker.close());
    const deviceId = `db-recovery-${process.pid}`;
    const config = writeAgentConfig(join(dir, '..'), {
      stateDir: dir,
      device: { id: deviceId },
      broker: { url: broker.url, allowPlaintext: true },
    });
    const fleet = await Observer.connect(broker.url, [`fleetlet/v1/devices/${deviceId}/events`]);
    onTestFinished(() => fleet.close());
    open(dir).db.close();
    writeFileSync(join(dir, DATABASE_FILE), 'not a database at all, just text '.repeat(300));
    const agent = startCli(['agent', '--config', config]);
    onTestFinished(() => void agent.child.kill('SIGKILL'));
    const seen = await fleet.waitFor((m) => (m.json as FleetEvent | undefined)?.kind === 'state.database-recovered', 'the recovery event');
    const event = EventSchema.parse(seen.json);
    expect(event).toMatchObject({ state: 'occurred', detail: { journalRowsSalvaged: 0, copiesRemoved: 0 } });
    expect(isEventKind(event.kind)).toBe(true);
    expect(event.detail?.movedTo).toMatch(/fleetlet\.db\.corrupt-/);
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(agent.output()).toContain('state database was unreadable');
    const db = new BetterSqlite3(join(dir, DATABASE_FILE), { readonly: true });
    const kinds = db.prepare('SELECT kind FROM event_log').pluck().all();
    db.close();
    expect(kinds).toContain('state.database-recovered');
  });
});
