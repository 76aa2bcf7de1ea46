import type { HubDatabase } from '../db/open.js';
import { iso } from './device-queries.js';
import { ApiRequestError } from './errors.js';
import { parseInput, queryObject, sendJson } from './http-io.js';
import type { Route } from './routes.js';
import { PresenceHistoryQuery, type PresenceHistory } from '../../protocol/hub-api.js';

/** A device's boot/presence history; a viewer may read it. */
export const PRESENCE_ROUTES: Route[] = [
  {
    method: 'GET',
    pattern: /^\/api\/v1\/devices\/([A-Za-z0-9._:-]{1,63})\/presence$/,
    mutation: false,
    handle: async ({ res, url, hub, params }) => {
      const history = await presenceHistory(hub, params[0]!, parseInput(PresenceHistoryQuery, queryObject(url)));
      if (!history) throw new ApiRequestError(404, `no device "${params[0]}"`);
      sendJson(res, 200, history);
    },
  },
];

/**
 * One page, newest first by receipt (the order the hub learnt them; a will's own `at` is its connection's opening,
 * older than the birth it ends). One row more than the page tells whether another follows, and whether the page's
 * last entry began a new boot. Undefined for a device never heard from.
 */
export async function presenceHistory(hub: HubDatabase, deviceId: string, query: PresenceHistoryQuery): Promise<PresenceHistory | undefined> {
  let select = hub.db.selectFrom('presence_history').selectAll().where('device_id', '=', deviceId);
  if (query.before) select = select.where('id', '<', query.before);
  const rows = await select.orderBy('id', 'desc').limit(query.limit + 1).execute();
  if (rows.length === 0) {
    const known = await hub.db.selectFrom('devices').select('device_id').where('device_id', '=', deviceId).executeTakeFirst();
    if (!known) return undefined;
  }
  const page = rows.slice(0, query.limit);
  return {
    deviceId,
    entries: page.map((r, i) => {
      const older = rows[i + 1];
      return {
        id: r.id,
        state: r.state === 'offline' ? 'offline' : 'online',
        bootSequence: r.boot_sequence,
        reason: r.reason,
        at: iso(r.at_ms),
        receivedAt: iso(r.received_at_ms),
        newBoot: older !== undefined && r.boot_sequence > older.boot_sequence,
      };
    }),
    nextBefore: rows.length > query.limit ? page[page.length - 1]!.id : null,
  };
}
