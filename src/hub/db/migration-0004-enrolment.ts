import type { Kysely, Migration } from 'kysely';
import type { HubDialect } from './migrations.js';

/**
 * The hub as the fleet's CA: bootstrap tokens (only their sha256), enrolment requests (the pending list), the
 * certificates it issued (serials for the CRL, expiry for alerts) and one row per enrolled device (its key, its
 * renewal credential's sha256, active / revoked / released).
 */
export function enrolmentMigration(dialect: HubDialect): Migration {
  const id = dialect === 'sqlite' ? ('integer' as const) : ('bigserial' as const);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('enrol_tokens')
        .addColumn('id', id, (c) => (dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('max_uses', 'integer', (c) => c.notNull())
        .addColumn('uses', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('auto_approve', 'integer', (c) => c.notNull())
        .addColumn('created_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('expires_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('revoked', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();

      await db.schema
        .createTable('enrolment_requests')
        .addColumn('id', id, (c) => (dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('token_id', 'bigint', (c) => c.notNull())
        .addColumn('public_key_sha256', 'text', (c) => c.notNull())
        .addColumn('fingerprint', 'text')
        .addColumn('remote_addr', 'text')
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('created_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('decided_at_ms', 'bigint')
        .addColumn('decided_by', 'text')
        .execute();
      await db.schema.createIndex('enrolment_requests_device').on('enrolment_requests').columns(['device_id', 'status']).execute();

      await db.schema
        .createTable('device_certificates')
        .addColumn('serial', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('public_key_sha256', 'text', (c) => c.notNull())
        .addColumn('not_before_ms', 'bigint', (c) => c.notNull())
        .addColumn('not_after_ms', 'bigint', (c) => c.notNull())
        .addColumn('issued_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('revoked_at_ms', 'bigint')
        .execute();
      await db.schema.createIndex('device_certificates_device').on('device_certificates').column('device_id').execute();

      await db.schema
        .createTable('enrolled_devices')
        .addColumn('device_id', 'text', (c) => c.primaryKey())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('public_key_sha256', 'text', (c) => c.notNull())
        .addColumn('renewal_hash', 'text', (c) => c.unique())
        .addColumn('current_serial', 'text')
        .addColumn('not_after_ms', 'bigint')
        .addColumn('enrolled_at_ms', 'bigint', (c) => c.notNull())
        .addColumn('renewed_at_ms', 'bigint')
        .addColumn('revoked_at_ms', 'bigint')
        .addColumn('node_removal', 'text')
        .execute();
      await db.schema.createIndex('enrolled_devices_expiry').on('enrolled_devices').columns(['state', 'not_after_ms']).execute();
    },
  };
}
