import { listAlerts } from '../alerts/alert-queries.js';
import { parseInput, queryObject, sendJson } from './http-io.js';
import type { Route } from './routes.js';
import { AlertsQuery } from '../../protocol/hub-alerts-api.js';

/** The alerts the engine opened and resolved; a viewer may read them. */
export const ALERT_ROUTES: Route[] = [
  {
    method: 'GET',
    pattern: /^\/api\/v1\/alerts$/,
    mutation: false,
    handle: async ({ res, url, hub }) => sendJson(res, 200, await listAlerts(hub, parseInput(AlertsQuery, queryObject(url)))),
  },
];
