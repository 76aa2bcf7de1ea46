import type { Insertable, Transaction } from 'kysely';
import type { HubTables } from '../db/tables.js';
import type { IngestItem } from './classify.js';

type PresenceItem = Extract<IngestItem, { channel: 'presence' }>;

/** Rows per INSERT, well under both databases' bound-parameter limits. */
const CHUNK = 200;

/**
 * Appends every birth and will of the batch to presence_history, in the commit that updates the device row. A
 * presence has no messageId: a redelivery, or the retained copy the broker replays at subscribe, is the same boot
 * sequence, state and `at`, which the unique index turns into nothing.
 */
export async function recordPresence(trx: Transaction<HubTables>, items: readonly IngestItem[]): Promise<void> {
  const rows = new Map<string, Insertable<HubTables['presence_history']>>();
  for (const item of items) {
    if (item.channel !== 'presence') continue;
    const row = presenceRow(item);
    rows.set(`${row.device_id}\n${row.boot_sequence}\n${row.state}\n${row.at_ms}`, row);
  }
  const all = [...rows.values()];
  for (let i = 0; i < all.length; i += CHUNK) {
    await trx
      .insertInto('presence_history')
      .values(all.slice(i, i + CHUNK))
      .onConflict((oc) => oc.columns(['device_id', 'boot_sequence', 'state', 'at_ms']).doNothing())
      .execute();
  }
}

function presenceRow(item: PresenceItem): Insertable<HubTables['presence_history']> {
  return {
    device_id: item.deviceId,
    state: item.presence.state,
    boot_sequence: item.presence.bootSequence,
    reason: item.presence.reason ?? null,
    at_ms: Date.parse(item.presence.at),
    received_at_ms: item.receivedAtMs,
  };
}
