import { audit } from '../auth/sessions.js';
import { createRollout } from '../rollouts/create-rollout.js';
import { applyRolloutAction } from '../rollouts/rollout-actions.js';
import { listRollouts, rolloutDetail, rolloutSummary } from '../rollouts/rollout-views.js';
import { ApiRequestError } from './errors.js';
import { parseInput, queryObject, readJsonBody, sendJson } from './http-io.js';
import type { Route } from './routes.js';
import * as S from '../../protocol/hub-api.js';
import { HubRolloutAction, HubRolloutCreate } from '../../protocol/hub-rollouts-api.js';

/**
 * Rollouts the hub runs: an operator hands over the envelopes signed for each device (POST /api/v1/rollouts),
 * anyone may read them, operators pause, resume and abort them. Every change is audited.
 */
const ROLLOUT = '([A-Za-z0-9_-]{8,64})';
/** One signed envelope per device is about 700 bytes: 20,000 devices fit. */
const MAX_CREATE_BYTES = 32 * 1024 * 1024;

export const ROLLOUT_ROUTES: Route[] = [
  {
    method: 'POST',
    pattern: /^\/api\/v1\/rollouts$/,
    mutation: true,
    handle: async ({ req, res, hub, principal, remoteAddr, now }) => {
      const create = parseInput(HubRolloutCreate, await readJsonBody(req, MAX_CREATE_BYTES));
      await createRollout(hub, create, principal.username, now);
      await audit(
        hub,
        { actor: principal.username, action: 'rollout.create', target: create.rolloutId, remoteAddr, detail: { kind: create.kind, devices: Object.keys(create.commands).length } },
        now,
      );
      sendJson(res, 201, await rolloutSummary(hub, create.rolloutId));
    },
  },
  {
    method: 'GET',
    pattern: /^\/api\/v1\/rollouts$/,
    mutation: false,
    handle: async ({ res, url, hub }) => {
      parseInput(S.NoQuery, queryObject(url));
      sendJson(res, 200, { rollouts: await listRollouts(hub) });
    },
  },
  {
    method: 'GET',
    pattern: new RegExp(`^/api/v1/rollouts/${ROLLOUT}$`),
    mutation: false,
    handle: async ({ res, url, hub, params }) => {
      parseInput(S.NoQuery, queryObject(url));
      const detail = await rolloutDetail(hub, params[0]!);
      if (!detail) throw new ApiRequestError(404, `no rollout "${params[0]}"`);
      sendJson(res, 200, detail);
    },
  },
  {
    method: 'POST',
    pattern: new RegExp(`^/api/v1/rollouts/${ROLLOUT}/(pause|resume|abort)$`),
    mutation: true,
    handle: async ({ req, res, hub, params, principal, remoteAddr, now }) => {
      const [rolloutId, action] = params as [string, 'pause' | 'resume' | 'abort'];
      const body = parseInput(HubRolloutAction, req.headers['content-type'] === undefined ? {} : await readJsonBody(req));
      await applyRolloutAction(hub, rolloutId, action, body, principal.username, now);
      await audit(hub, { actor: principal.username, action: `rollout.${action}`, target: rolloutId, remoteAddr, ...(body.maxFailures ? { detail: { maxFailures: body.maxFailures } } : {}) }, now);
      sendJson(res, 200, await rolloutSummary(hub, rolloutId));
    },
  },
];
