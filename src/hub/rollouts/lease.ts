import type { HubDatabase } from '../db/open.js';

/**
 * One replica at a time drives the rollouts: it holds this row (owner + expiry) and renews it on every tick; another
 * replica takes it over only once it expired, so a replica that died hands over within one lease length. Both
 * steps are single statements, so two replicas racing for it cannot both win.
 */
const LEASE_NAME = 'rollouts';

export class RolloutLease {
  constructor(
    private readonly hub: HubDatabase,
    readonly owner: string,
    private readonly lengthMs: number,
  ) {}

  /** Takes or renews the lease; false when another replica holds it. */
  async hold(now: number): Promise<boolean> {
    const expires = now + this.lengthMs;
    const inserted = await this.hub.db
      .insertInto('rollout_leases')
      .values({ lease_name: LEASE_NAME, owner: this.owner, expires_at_ms: expires })
      .onConflict((oc) => oc.column('lease_name').doNothing())
      .returning('owner')
      .executeTakeFirst();
    if (inserted) return true;
    const renewed = await this.hub.db
      .updateTable('rollout_leases')
      .set({ owner: this.owner, expires_at_ms: expires })
      .where('lease_name', '=', LEASE_NAME)
      .where((eb) => eb.or([eb('owner', '=', this.owner), eb('expires_at_ms', '<', now)]))
      .executeTakeFirst();
    return Number(renewed.numUpdatedRows) === 1;
  }

  /** Gives the lease up at a clean stop, so another replica takes over at once. */
  async release(): Promise<void> {
    await this.hub.db.updateTable('rollout_leases').set({ expires_at_ms: 0 }).where('lease_name', '=', LEASE_NAME).where('owner', '=', this.owner).execute();
  }
}
