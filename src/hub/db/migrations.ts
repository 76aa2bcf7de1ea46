import { alertsMigration } from '../alerts/migration.js';
import { enrolmentMigration } from './migration-0004-enrolment.js';
import { type ColumnDefinitionBuilder, type CreateTableBuilder, type Kysely, type Migration } from 'kysely';
import { rolloutsMigration } from '../rollouts/rollout-migration.js';

/**
 * The hub's one migration list, for SQLite and PostgreSQL alike (kysely's schema builder writes each dialect's
 * SQL). Append only: a released step never changes, a new one gets the next number. Names sort in order, which is
 * how kysely's Migrator applies them; it records them in kysely_migration and takes a lock, so two replicas
 * starting at once do not migrate twice.
 */
export type HubDialect = 'sqlite' | 'postgres';

type Table = CreateTableBuilder<string, never>;

/** A database-generated integer id: SQLite's INTEGER PRIMARY KEY AUTOINCREMENT or PostgreSQL's bigserial. */
function withId(table: Table, dialect: HubDialect): Table {
  return dialect === 'sqlite'
    ? table.addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    : table.addColumn('id', 'bigserial', (c) => c.primaryKey());
}

const notNull = (c: ColumnDefinitionBuilder) => c.notNull();

function initial(dialect: HubDialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('devices')
        .addColumn('device_id', 'text', (c) => c.primaryKey())
        .addColumn('first_seen_ms', 'bigint', notNull)
        .addColumn('last_seen_ms', 'bigint', notNull)
        .addColumn('presence_state', 'text')
        .addColumn('presence_boot_sequence', 'bigint')
        .addColumn('presence_at_ms', 'bigint')
        .addColumn('presence_reason', 'text')
        .addColumn('inventory_json', 'text')
        .addColumn('inventory_at_ms', 'bigint')
        .addColumn('name', 'text')
        .addColumn('fleetlet_version', 'text')
        .addColumn('k3s_version', 'text')
        .addColumn('labels_json', 'text')
        .addColumn('groups_json', 'text')
        .addColumn('status_json', 'text')
        .addColumn('status_sampled_at_ms', 'bigint')
        .addColumn('k3s_state', 'text')
        .addColumn('k3s_healthy', 'integer')
        .addColumn('health', 'text', (c) => c.notNull().defaultTo('ok'))
        .addColumn('fingerprint', 'text')
        .addColumn('identity_conflict', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('identity_conflict_at_ms', 'bigint')
        .execute();
      await db.schema.createIndex('devices_last_seen').on('devices').column('last_seen_ms').execute();

      await db.schema
        .createTable('device_fingerprints')
        .addColumn('device_id', 'text', notNull)
        .addColumn('fingerprint', 'text', notNull)
        .addColumn('first_seen_ms', 'bigint', notNull)
        .addColumn('last_seen_ms', 'bigint', notNull)
        .addColumn('switches', 'integer', (c) => c.notNull().defaultTo(0))
        .addPrimaryKeyConstraint('device_fingerprints_pk', ['device_id', 'fingerprint'])
        .execute();

      await db.schema
        .createTable('open_conditions')
        .addColumn('device_id', 'text', notNull)
        .addColumn('kind', 'text', notNull)
        .addColumn('condition_key', 'text', notNull)
        .addColumn('severity', 'text', notNull)
        .addColumn('raised_at_ms', 'bigint', notNull)
        .addPrimaryKeyConstraint('open_conditions_pk', ['device_id', 'kind', 'condition_key'])
        .execute();

      await withId(db.schema.createTable('status_samples'), dialect)
        .addColumn('device_id', 'text', notNull)
        .addColumn('sampled_at_ms', 'bigint', notNull)
        .addColumn('received_at_ms', 'bigint', notNull)
        .addColumn('seq', 'bigint', notNull)
        .addColumn('historical', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('cpu_percent', 'double precision')
        .addColumn('memory_available_bytes', 'bigint')
        .addColumn('memory_total_bytes', 'bigint')
        .addColumn('temperature_c', 'double precision')
        .addColumn('k3s_healthy', 'integer', notNull)
        .addColumn('disk_free_bytes', 'bigint')
        .execute();
      await db.schema.createIndex('status_samples_device_time').on('status_samples').columns(['device_id', 'sampled_at_ms']).execute();
      await db.schema.createIndex('status_samples_time').on('status_samples').column('sampled_at_ms').execute();

      await db.schema
        .createTable('status_rollups')
        .addColumn('device_id', 'text', notNull)
        .addColumn('bucket_seconds', 'integer', notNull)
        .addColumn('bucket_start_ms', 'bigint', notNull)
        .addColumn('samples', 'integer', notNull)
        .addColumn('cpu_percent_avg', 'double precision')
        .addColumn('cpu_percent_max', 'double precision')
        .addColumn('memory_available_min', 'bigint')
        .addColumn('temperature_c_max', 'double precision')
        .addColumn('disk_free_min', 'bigint')
        .addColumn('k3s_unhealthy_samples', 'integer', notNull)
        .addPrimaryKeyConstraint('status_rollups_pk', ['device_id', 'bucket_seconds', 'bucket_start_ms'])
        .execute();
      await db.schema.createIndex('status_rollups_time').on('status_rollups').columns(['bucket_seconds', 'bucket_start_ms']).execute();

      await withId(db.schema.createTable('events'), dialect)
        .addColumn('device_id', 'text', notNull)
        .addColumn('message_id', 'text', notNull)
        .addColumn('kind', 'text', notNull)
        .addColumn('event_key', 'text')
        .addColumn('state', 'text', notNull)
        .addColumn('severity', 'text', notNull)
        .addColumn('message', 'text', notNull)
        .addColumn('occurred_at_ms', 'bigint', notNull)
        .addColumn('received_at_ms', 'bigint', notNull)
        .addColumn('payload_json', 'text', notNull)
        .execute();
      await db.schema.createIndex('events_device_time').on('events').columns(['device_id', 'occurred_at_ms']).execute();
      await db.schema.createIndex('events_received').on('events').column('received_at_ms').execute();

      await withId(db.schema.createTable('command_results'), dialect)
        .addColumn('device_id', 'text', notNull)
        .addColumn('message_id', 'text', notNull)
        .addColumn('command_id', 'text')
        .addColumn('command_type', 'text')
        .addColumn('status', 'text', notNull)
        .addColumn('reason', 'text')
        .addColumn('at_ms', 'bigint', notNull)
        .addColumn('received_at_ms', 'bigint', notNull)
        .addColumn('payload_json', 'text', notNull)
        .execute();
      await db.schema.createIndex('command_results_device_time').on('command_results').columns(['device_id', 'at_ms']).execute();
      await db.schema.createIndex('command_results_command').on('command_results').column('command_id').execute();
      await db.schema.createIndex('command_results_received').on('command_results').column('received_at_ms').execute();

      await db.schema
        .createTable('received_messages')
        .addColumn('device_id', 'text', notNull)
        .addColumn('message_id', 'text', notNull)
        .addColumn('received_at_ms', 'bigint', notNull)
        .addPrimaryKeyConstraint('received_messages_pk', ['device_id', 'message_id'])
        .execute();
      await db.schema.createIndex('received_messages_time').on('received_messages').column('received_at_ms').execute();

      await withId(db.schema.createTable('rejected_messages'), dialect)
        .addColumn('topic', 'text', notNull)
        .addColumn('device_id', 'text')
        .addColumn('reason', 'text', notNull)
        .addColumn('received_at_ms', 'bigint', notNull)
        .addColumn('size_bytes', 'integer', notNull)
        .addColumn('payload_excerpt', 'text', notNull)
        .execute();

      await db.schema
        .createTable('hub_counters')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'bigint', notNull)
        .execute();

      await withId(db.schema.createTable('operators'), dialect)
        .addColumn('username', 'text', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text', notNull)
        .addColumn('role', 'text', notNull)
        .addColumn('created_at_ms', 'bigint', notNull)
        .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();

      await db.schema
        .createTable('operator_sessions')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('operator_id', 'bigint', (c) => c.notNull().references('operators.id').onDelete('cascade'))
        .addColumn('created_at_ms', 'bigint', notNull)
        .addColumn('expires_at_ms', 'bigint', notNull)
        .addColumn('last_used_at_ms', 'bigint', notNull)
        .execute();

      await withId(db.schema.createTable('api_tokens'), dialect)
        .addColumn('operator_id', 'bigint', (c) => c.notNull().references('operators.id').onDelete('cascade'))
        .addColumn('name', 'text', notNull)
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('role', 'text', notNull)
        .addColumn('created_at_ms', 'bigint', notNull)
        .addColumn('expires_at_ms', 'bigint')
        .addColumn('last_used_at_ms', 'bigint')
        .addColumn('revoked', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();

      await db.schema
        .createTable('login_attempts')
        .addColumn('attempt_key', 'text', notNull)
        .addColumn('window_start_ms', 'bigint', notNull)
        .addColumn('failures', 'integer', notNull)
        .addPrimaryKeyConstraint('login_attempts_pk', ['attempt_key', 'window_start_ms'])
        .execute();

      await withId(db.schema.createTable('audit_log'), dialect)
        .addColumn('at_ms', 'bigint', notNull)
        .addColumn('actor', 'text', notNull)
        .addColumn('action', 'text', notNull)
        .addColumn('target', 'text')
        .addColumn('detail_json', 'text')
        .addColumn('remote_addr', 'text')
        .execute();
      await db.schema.createIndex('audit_log_time').on('audit_log').column('at_ms').execute();
    },
  };
}

/** The migrations by name, in the order kysely applies them. */
export function hubMigrations(dialect: HubDialect): Record<string, Migration> {
  return {
    '0001_initial': initial(dialect),
    '0002_alerts': alertsMigration(dialect),
    '0003_rollouts': rolloutsMigration,
    '0004_enrolment': enrolmentMigration(dialect),
  };
}
