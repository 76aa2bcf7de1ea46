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
    expect(tables).toEqual(expect.arrayContaining(['rollouts', 'rollout_devices', 'rollout_leases', 'presence_history']));
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

  it('migrates a database of the release before presence history: its samples and rollups stay, the new columns start empty', async () => {
    const where = await databases.fresh();
    const old = await databases.open(where);
    // Back to the schema before 0005: its table and columns gone, its step unrecorded.
    await sql`DROP TABLE presence_history`.execute(old.db);
    for (const column of ['network_rx_bytes', 'network_tx_bytes', 'network_rx_rate', 'network_tx_rate']) {
      await sql`ALTER TABLE status_samples DROP COLUMN ${sql.ref(column)}`.execute(old.db);
    }
    for (const column of ['network_rx_rate_avg', 'network_tx_rate_avg']) await sql`ALTER TABLE status_rollups DROP COLUMN ${sql.ref(column)}`.execute(old.db);
    await sql`DELETE FROM kysely_migration WHERE name = '0005_presence_history'`.execute(old.db);
    await sql`INSERT INTO status_samples (device_id, sampled_at_ms, received_at_ms, seq, historical, cpu_percent, k3s_healthy) VALUES ('pi-1', 1000, 1001, 1, 0, 12.5, 1)`.execute(old.db);
    await sql`INSERT INTO status_rollups (device_id, bucket_seconds, bucket_start_ms, samples, cpu_percent_avg, k3s_unhealthy_samples) VALUES ('pi-1', 300, 0, 1, 12.5, 0)`.execute(old.db);
    await old.close();

    const hub = await databases.open(where);
    expect(await hub.db.selectFrom('status_samples').select(['cpu_percent', 'network_rx_bytes', 'network_rx_rate', 'network_tx_rate']).execute())
      .toEqual([{ cpu_percent: 12.5, network_rx_bytes: null, network_rx_rate: null, network_tx_rate: null }]);
    expect(await hub.db.selectFrom('status_rollups').select(['samples', 'network_rx_rate_avg', 'network_tx_rate_avg']).execute())
      .toEqual([{ samples: 1, network_rx_rate_avg: null, network_tx_rate_avg: null }]);
    expect(await hub.db.selectFrom('presence_history').selectAll().execute()).toEqual([]);
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
