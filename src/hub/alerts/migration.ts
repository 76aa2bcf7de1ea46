import { sql, type Kysely, type Migration } from 'kysely';
import type { HubDialect } from '../db/migrations.js';

/**
 * 0002_alerts: the alerts, the webhook delivery queue and what the backlog rule remembers between evaluations.
 * "Opened once" is the database's job: a partial unique index allows one open alert per (rule, subject), so two
 * replicas evaluating at once cannot both open it; a resolved one no longer counts, so a new occurrence opens anew.
 */
export function alertsMigration(dialect: HubDialect): Migration {
  /** A database-generated integer id, as migrations.ts makes them. */
  const withId = (name: string) => (db: Kysely<unknown>) =>
    dialect === 'sqlite'
      ? db.schema.createTable(name).addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
      : db.schema.createTable(name).addColumn('id', 'bigserial', (c) => c.primaryKey());
  return {
    async up(db: Kysely<unknown>) {
      await withId('alerts')(db)
        .addColumn('rule', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('device_id', 'text')
        .addColumn('rollout_id', 'text')
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('summary', 'text', (c) => c.notNull())
        .addColumn('remedy', 'text')
        .addColumn('details_json', 'text', (c) => c.notNull())
        .addColumn('opened_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('updated_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('resolved_at_ms', 'bigint')
        .addColumn('notified_at_ms', 'bigint', (c) => c.notNull())
        .execute();
      // Literal, not a parameter: an index predicate cannot take one.
      await db.schema
        .createIndex('alerts_open_once')
        .on('alerts')
        .columns(['rule', 'subject'])
        .unique()
        .where(sql.ref('state'), '=', sql.lit('open'))
        .execute();
      await db.schema.createIndex('alerts_device').on('alerts').columns(['device_id', 'id']).execute();
      await db.schema.createIndex('alerts_state').on('alerts').columns(['state', 'id']).execute();
      // The live stream's look for new changes.
      await db.schema.createIndex('alerts_updated').on('alerts').column('updated_at_ms').execute();

      await withId('alert_deliveries')(db)
        .addColumn('delivery_id', 'text', (c) => c.notNull().unique())
        .addColumn('alert_id', 'bigint', (c) => c.notNull().references('alerts.id').onDelete('cascade'))
        .addColumn('webhook', 'text', (c) => c.notNull())
        .addColumn('event', 'text', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('next_attempt_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('lease_until_ms', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('last_error', 'text')
        .addColumn('done_at_ms', 'bigint')
        .execute();
      await db.schema.createIndex('alert_deliveries_due').on('alert_deliveries').columns(['state', 'next_attempt_at_ms']).execute();

      await db.schema
        .createTable('alert_tracks')
        .addColumn('rule', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('since_ms', 'bigint', (c) => c.notNull())
        .addColumn('since_value', 'bigint', (c) => c.notNull())
        .addColumn('last_ms', 'bigint', (c) => c.notNull())
        .addColumn('last_value', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('alert_tracks_pk', ['rule', 'subject'])
        .execute();
    },
  };
}
