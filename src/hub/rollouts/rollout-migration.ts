import type { ColumnDefinitionBuilder, Kysely, Migration } from 'kysely';

/**
 * 0003_rollouts: rollouts the hub runs. One row per rollout, one per device of it (its signed command, kept as the
 * operator signed it, and its outcome), and the lease that lets one replica at a time drive them.
 */
const notNull = (c: ColumnDefinitionBuilder) => c.notNull();

export const rolloutsMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('rollouts')
      .addColumn('rollout_id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', notNull)
      .addColumn('description', 'text', notNull)
      .addColumn('state', 'text', notNull)
      .addColumn('state_reason', 'text')
      .addColumn('created_by', 'text', notNull)
      .addColumn('created_at_ms', 'bigint', notNull)
      .addColumn('updated_at_ms', 'bigint', notNull)
      .addColumn('deadline_ms', 'bigint', notNull)
      .addColumn('canaries', 'integer', notNull)
      .addColumn('max_failures_json', 'text', notNull)
      .addColumn('threshold_raised', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('device_timeout_seconds', 'integer', notNull)
      .addColumn('watch_seconds', 'integer', notNull)
      .addColumn('batch_count', 'integer', notNull)
      .addColumn('current_batch', 'integer', notNull)
      .execute();
    await db.schema.createIndex('rollouts_state').on('rollouts').column('state').execute();

    await db.schema
      .createTable('rollout_devices')
      .addColumn('rollout_id', 'text', (c) => c.notNull().references('rollouts.rollout_id').onDelete('cascade'))
      .addColumn('device_id', 'text', notNull)
      .addColumn('batch_index', 'integer', notNull)
      .addColumn('command_id', 'text', notNull)
      .addColumn('envelope_json', 'text', notNull)
      .addColumn('outcome', 'text', notNull)
      .addColumn('detail', 'text')
      .addColumn('sent_at_ms', 'bigint')
      .addColumn('finished_at_ms', 'bigint')
      .addColumn('watch_until_ms', 'bigint')
      .addPrimaryKeyConstraint('rollout_devices_pk', ['rollout_id', 'device_id'])
      .execute();
    await db.schema.createIndex('rollout_devices_outcome').on('rollout_devices').columns(['rollout_id', 'outcome']).execute();
    await db.schema.createIndex('rollout_devices_command').on('rollout_devices').column('command_id').execute();

    await db.schema
      .createTable('rollout_leases')
      .addColumn('lease_name', 'text', (c) => c.primaryKey())
      .addColumn('owner', 'text', notNull)
      .addColumn('expires_at_ms', 'bigint', notNull)
      .execute();
  },
};
