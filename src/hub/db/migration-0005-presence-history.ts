import type { Kysely, Migration } from 'kysely';
import type { HubDialect } from './migrations.js';

/**
 * The boot/presence history of every device (each birth and will, not only the newest in `devices`), and the
 * network rates of status: the raw counters and the rate since the previous sample, and the rollups' average rate.
 */
export function presenceHistoryMigration(dialect: HubDialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('presence_history')
        .addColumn('id', dialect === 'sqlite' ? 'integer' : 'bigserial', (c) => (dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('boot_sequence', 'bigint', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('at_ms', 'bigint', (c) => c.notNull())
        .addColumn('received_at_ms', 'bigint', (c) => c.notNull())
        .execute();
      // One row per presence message: a redelivery or a retained replay carries the same boot sequence, state and time.
      await db.schema
        .createIndex('presence_history_message')
        .on('presence_history')
        .columns(['device_id', 'boot_sequence', 'state', 'at_ms'])
        .unique()
        .execute();
      await db.schema.createIndex('presence_history_device').on('presence_history').columns(['device_id', 'id']).execute();
      await db.schema.createIndex('presence_history_received').on('presence_history').column('received_at_ms').execute();

      // SQLite adds one column per ALTER TABLE.
      for (const column of ['network_rx_bytes', 'network_tx_bytes']) {
        await db.schema.alterTable('status_samples').addColumn(column, 'bigint').execute();
      }
      for (const column of ['network_rx_rate', 'network_tx_rate']) {
        await db.schema.alterTable('status_samples').addColumn(column, 'double precision').execute();
      }
      for (const column of ['network_rx_rate_avg', 'network_tx_rate_avg']) {
        await db.schema.alterTable('status_rollups').addColumn(column, 'double precision').execute();
      }
    },
  };
}
