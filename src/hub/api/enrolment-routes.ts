import type { IncomingMessage, ServerResponse } from 'node:http';
import { EnrolRequest } from '../../protocol/enrolment.js';
import * as E from '../../protocol/hub-enrolment-api.js';
import { audit } from '../auth/sessions.js';
import type { EnrolmentAuthority } from '../enrolment/enrolment-authority.js';
import { EnrolmentAdminError } from '../enrolment/errors.js';
import { decideEnrolment, listEnrolmentRequests, type EnrolmentRequestInfo } from '../enrolment/pending.js';
import { revokeDevice } from '../enrolment/revocation.js';
import { ApiRequestError } from './errors.js';
import { parseInput, queryObject, readJsonBody, sendJson } from './http-io.js';
import type { Route } from './routes.js';

/** A route that authenticates its caller itself (a device's bootstrap token or renewal credential), before and apart from sessions and API tokens. */
export interface DeviceRoute {
  method: 'POST';
  pattern: RegExp;
  handle(context: { req: IncomingMessage; res: ServerResponse; remoteAddr: string; now: number }): Promise<void>;
}

const NOT_A_CA = 'this hub does not enrol devices: set hub.enrolment.caCertFile and caKeyFile (fleetlet hub ca init)';
const DEVICE = '([A-Za-z0-9._:-]{1,63})';

function bearer(req: IncomingMessage): string {
  const match = /^Bearer ([A-Za-z0-9_-]{8,200})$/.exec(req.headers.authorization ?? '');
  if (!match) throw new ApiRequestError(401, 'give the bootstrap token or renewal credential as Authorization: Bearer');
  return match[1]!;
}

/** POST /api/v1/enrol (bootstrap token) and /api/v1/enrol/renew (renewal credential); see protocol/enrolment.ts. */
export function enrolmentDeviceRoutes(authority: EnrolmentAuthority | undefined): DeviceRoute[] {
  const route = (pattern: RegExp, kind: 'enrol' | 'renew'): DeviceRoute => ({
    method: 'POST',
    pattern,
    handle: async ({ req, res, remoteAddr, now }) => {
      if (!authority) throw new ApiRequestError(503, NOT_A_CA);
      const secret = bearer(req);
      const request = parseInput(EnrolRequest, await readJsonBody(req));
      const outcome = kind === 'enrol' ? await authority.enrol(secret, request, remoteAddr, now) : await authority.renew(secret, request, remoteAddr, now);
      sendJson(res, outcome.httpStatus, outcome.body);
    },
  });
  return [route(/^\/api\/v1\/enrol$/, 'enrol'), route(/^\/api\/v1\/enrol\/renew$/, 'renew')];
}

/** The operator's routes: the enrolment list, approve/deny, revocation (a device's certificate state is in its detail). */
export function enrolmentOperatorRoutes(authority: EnrolmentAuthority | undefined): Route[] {
  return [
    {
      method: 'GET',
      pattern: /^\/api\/v1\/enrolments$/,
      mutation: false,
      operatorOnly: true,
      handle: async ({ res, url, hub }) => {
        const { status } = parseInput(E.EnrolmentListQuery, queryObject(url));
        sendJson(res, 200, { enrolments: (await listEnrolmentRequests(hub, { status })).map(requestItem) });
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/v1\/enrolments\/(\d{1,15})\/(approve|deny)$/,
      mutation: true,
      handle: async ({ res, hub, params, principal, remoteAddr, now }) => {
        const decided = await asApiError(() => decideEnrolment(hub, Number(params[0]), params[1] as 'approve' | 'deny', principal.username, remoteAddr, now));
        sendJson(res, 200, requestItem(decided));
      },
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/api/v1/devices/${DEVICE}/revoke$`),
      mutation: true,
      handle: async ({ res, hub, params, principal, remoteAddr, now }) => {
        if (!authority) throw new ApiRequestError(503, NOT_A_CA);
        const revoked = await asApiError(() => revokeDevice(hub, params[0]!, principal.username, remoteAddr, now));
        const crlEntries = await authority.revoked(params[0]!, now);
        await audit(hub, { actor: principal.username, action: 'crl.write', target: params[0]!, remoteAddr, detail: { entries: crlEntries } }, now);
        sendJson(res, 200, { ...revoked, crlEntries });
      },
    },
  ];
}

function requestItem({ createdAtMs, decidedAtMs, ...rest }: EnrolmentRequestInfo) {
  return { ...rest, createdAt: new Date(createdAtMs).toISOString(), decidedAt: decidedAtMs === null ? null : new Date(decidedAtMs).toISOString() };
}

async function asApiError<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof EnrolmentAdminError) throw new ApiRequestError(/no |not enrolled/.test(err.message) ? 404 : 400, err.message);
    throw err;
  }
}
