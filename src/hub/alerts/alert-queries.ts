import type { AlertList, AlertsQuery } from '../../protocol/hub-alerts-api.js';
import type { HubDatabase } from '../db/open.js';
import { alertItemOf } from './alert-item.js';

/** `GET /api/v1/alerts`: newest first, one page; `before` continues from a previous page's `nextBefore`. */
export async function listAlerts(hub: HubDatabase, query: AlertsQuery): Promise<AlertList> {
  let select = hub.db.selectFrom('alerts').selectAll();
  if (query.state) select = select.where('state', '=', query.state);
  if (query.rule) select = select.where('rule', '=', query.rule);
  if (query.device) select = select.where('device_id', '=', query.device);
  if (query.before) select = select.where('id', '<', query.before);
  const rows = await select.orderBy('id', 'desc').limit(query.limit + 1).execute();
  const page = rows.slice(0, query.limit);
  const open = await hub.db
    .selectFrom('alerts')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('state', '=', 'open')
    .executeTakeFirstOrThrow();
  return {
    alerts: page.map(alertItemOf),
    nextBefore: rows.length > query.limit ? Number(page[page.length - 1]!.id) : null,
    open: Number(open.n),
  };
}
