import { z } from 'zod';
import type { Database } from '../store/db.js';

/**
 * The node identity as fleetlet made or adopted it, kept in the state database (kv table) so that the files can
 * be restored when /etc is wiped or k3s is reinstalled. The database is 0600 in a 0700 directory, like the files.
 */
export const StoredIdentitySchema = z.strictObject({
  version: z.literal(1),
  nodePassword: z.string().regex(/^[0-9a-f]{32}$/),
  nodeId: z.string().regex(/^[0-9a-f]{8}$/).optional(),
  /** Fingerprint of the machine when the identity was made, for the record; device-identity.json decides on changes. */
  machineFingerprint: z.string().max(128).optional(),
  createdAt: z.int(),
});
export type StoredIdentity = z.infer<typeof StoredIdentitySchema>;

const KEY = 'identity.node';

export class IdentityStore {
  constructor(private readonly db: Database) {}

  /** The stored identity; undefined when none, or when the row is unreadable (then it is made afresh). */
  load(): StoredIdentity | undefined {
    const row = this.db.prepare('SELECT value FROM kv WHERE key = ?').get(KEY) as { value: string } | undefined;
    if (!row) return undefined;
    try {
      const parsed = StoredIdentitySchema.safeParse(JSON.parse(row.value));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  save(identity: StoredIdentity, now = Date.now()): void {
    this.db
      .prepare(
        'INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      )
      .run(KEY, JSON.stringify(StoredIdentitySchema.parse(identity)), now);
  }
}
