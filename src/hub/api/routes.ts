import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HubDatabase } from '../db/open.js';
import { audit, type Principal } from '../auth/sessions.js';
import { ApiRequestError } from './errors.js';
import { deviceDetail, listDevices } from './device-queries.js';
import { statusHistory } from './history-queries.js';
import { parseInput, queryObject, sendJson } from './http-io.js';
import { listAudit, listEvents, listResults } from './log-queries.js';
import * as S from '../../protocol/hub-api.js';

/** What a route handler gets: the request, who sent it, and the hub. */
export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: string[];
  principal: Principal;
  remoteAddr: string;
  hub: HubDatabase;
  now: number;
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  pattern: RegExp;
  /** Mutations need the role operator and, from a cookie session, a same-origin request. */
  mutation: boolean;
  /** Reads only an operator may make (the audit log names people and their addresses). */
  operatorOnly?: boolean;
  handle(context: RouteContext): Promise<void>;
}

const DEVICE = '([A-Za-z0-9._:-]{1,63})';

/** The read routes and the device mutations; login, logout, stream and metrics live in server.ts with their state. */
export const DATA_ROUTES: Route[] = [
  {
    method: 'GET',
    pattern: /^\/api\/v1\/devices$/,
    mutation: false,
    handle: async ({ res, url, hub }) => sendJson(res, 200, await listDevices(hub, parseInput(S.DeviceListQuery, queryObject(url)))),
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/api/v1/devices/${DEVICE}$`),
    mutation: false,
    handle: async ({ res, url, hub, params }) => {
      parseInput(S.NoQuery, queryObject(url));
      const detail = await deviceDetail(hub, params[0]!);
      if (!detail) throw new ApiRequestError(404, `no device "${params[0]}"`);
      sendJson(res, 200, detail);
    },
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/api/v1/devices/${DEVICE}/history$`),
    mutation: false,
    handle: async ({ res, url, hub, params, now }) =>
      sendJson(res, 200, await statusHistory(hub, params[0]!, parseInput(S.HistoryQuery, queryObject(url)), now)),
  },
  {
    method: 'DELETE',
    pattern: new RegExp(`^/api/v1/devices/${DEVICE}/identity-conflict$`),
    mutation: true,
    handle: async ({ res, hub, params, principal, remoteAddr, now }) => {
      const deviceId = params[0]!;
      const cleared = await hub.db
        .updateTable('devices')
        .set({ identity_conflict: 0, identity_conflict_at_ms: null })
        .where('device_id', '=', deviceId)
        .executeTakeFirst();
      if (Number(cleared.numUpdatedRows) === 0) throw new ApiRequestError(404, `no device "${deviceId}"`);
      await audit(hub, { actor: principal.username, action: 'device.identity-conflict.clear', target: deviceId, remoteAddr }, now);
      sendJson(res, 200, { ok: true });
    },
  },
  {
    method: 'GET',
    pattern: /^\/api\/v1\/events$/,
    mutation: false,
    handle: async ({ res, url, hub }) => sendJson(res, 200, await listEvents(hub, parseInput(S.EventsQuery, queryObject(url)))),
  },
  {
    method: 'GET',
    pattern: /^\/api\/v1\/results$/,
    mutation: false,
    handle: async ({ res, url, hub }) => sendJson(res, 200, await listResults(hub, parseInput(S.ResultsQuery, queryObject(url)))),
  },
  {
    method: 'GET',
    pattern: /^\/api\/v1\/audit$/,
    mutation: false,
    operatorOnly: true,
    handle: async ({ res, url, hub }) => sendJson(res, 200, await listAudit(hub, parseInput(S.AuditQuery, queryObject(url)))),
  },
  {
    method: 'GET',
    pattern: /^\/api\/v1\/me$/,
    mutation: false,
    handle: async ({ res, principal }) =>
      sendJson(res, 200, {
        username: principal.username,
        role: principal.role,
        via: principal.via,
        expiresAt: principal.expiresAtMs === null ? null : new Date(principal.expiresAtMs).toISOString(),
      }),
  },
];
