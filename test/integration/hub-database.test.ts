import { afterAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { HubDatabaseTooNewError } from '../../src/hub/errors.js';
import { hubMigrations } from '../../src/hub/db/migrations.js';
import { HubDatabases } from '../helpers/hub-database.js';
import { hubDialects } from '../helpers/postgres.js';

describe.each(hubDialects())('hub database on %s', (dialect) => {
  const databases = new HubDatabases(dialect);
  afterAll(() => databases.close());

  it('creates every table on a fresh database and migrates nothing twice when opened again', async () => {
    const where = await databases.fresh();
    const first = await databases.open(where);
    await first.db
      .insertInto('devices')
      .values({ device_id: 'pi-1', first_seen_ms: 1, last_seen_ms: 2, health: 'ok', identity_conflict: 0 })
      .execute();
    await first.close();

    const second = await databases.open(where);
    const tables = (await second.db.introspection.getTables()).map((t) => t.name);
    expect(tables).toEqual(
      expect.arrayContaining([
        'devices', 'device_fingerprints', 'open_conditions', 'status_samples', 'status_rollups', 'events',
        'command_results', 'received_messages', 'rejected_messages', 'hub_counters', 'operators',
        'operator_sessions', 'api_tokens', 'login_attempts', 'audit_log',
        'enrol_tokens', 'enrolment_requests', 'device_certificates', 'enrolled_devices',
      ]),
    );
    expect(tables).toEqual(expect.arrayContaining(['rollouts', 'rollout_devices', 'rollout_leases']));
    const applied = await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(second.db);
    // Every migration of the list once, in order, and nothing else.
    expect(applied.rows.map((r) => r.name)).toEqual(Object.keys(hubMigrations(dialect)));
    expect(await second.db.selectFrom('devices').select('device_id').execute()).toEqual([{ device_id: 'pi-1' }]);
    await second.close();
  });

  it('returns 64-bit times and generated ids as numbers, not strings', async () => {
    const hub = await databases.open();
    const at = Date.UTC(2026, 2, 1, 8, 15, 30, 4);
    const inserted = await hub.db
      .insertInto('events')
      .values({
        device_id: 'pi-1', message_id: 'm-1', kind: 'disk.low', state: 'raised', severity: 'warning', message: 'low',
        occurred_at_ms: at, received_at_ms: at + 1, payload_json: '{}',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    expect(typeof inserted.id).toBe('number');
    const row = await hub.db.selectFrom('events').select(['occurred_at_ms', 'received_at_ms']).executeTakeFirstOrThrow();
    expect(row).toEqual({ occurred_at_ms: at, received_at_ms: at + 1 });
    const count = await hub.db.selectFrom('events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(1);
    await hub.close();
  });

  it('keeps one row per device and message id, the key deduplication rests on', async () => {
    const hub = await databases.open();
    const insert = () =>
      hub.db
        .insertInto('received_messages')
        .values({ device_id: 'pi-1', message_id: 'uuid-1', received_at_ms: 5 })
        .onConflict((oc) => oc.columns(['device_id', 'message_id']).doNothing())
        .returning('message_id')
        .execute();
    expect(await insert()).toHaveLength(1);
    expect(await insert()).toHaveLength(0);
    await hub.close();
  });

  it('refuses a database a newer hub migrated, naming the fix', async () => {
    const where = await databases.fresh();
    const hub = await databases.open(where);
    await sql`INSERT INTO kysely_migration (name, timestamp) VALUES ('9999_future', '2030-01-01T00:00:00.000Z')`.execute(hub.db);
    await hub.close();
    await expect(databases.open(where)).rejects.toThrow(HubDatabaseTooNewError);
  });
});
