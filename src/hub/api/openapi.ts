import { z } from 'zod';
import { FLEETLET_VERSION } from '../../lib/version.js';
import * as S from '../../protocol/hub-api.js';
import { AlertList, AlertsQuery } from '../../protocol/hub-alerts-api.js';
import * as E from '../../protocol/hub-enrolment-api.js';
import { EnrolRequest, EnrolResponse } from '../../protocol/enrolment.js';
import * as R from '../../protocol/hub-rollouts-api.js';

/**
 * The OpenAPI 3.0 document of /api/v1, generated from the zod schemas the server validates and answers with, so
 * that the document cannot drift from the code. Served at /api/v1/openapi.json.
 */
const COMPONENTS = {
  DeviceList: S.DeviceList,
  DeviceDetail: S.DeviceDetail,
  History: S.History,
  EventList: S.EventList,
  ResultList: S.ResultList,
  AuditList: S.AuditList,
  LoginRequest: S.LoginRequest,
  Me: S.Me,
  Ok: S.Ok,
  ApiError: S.ApiError,
  StreamChange: S.StreamChange,
  AlertList,
  EnrolRequest,
  EnrolResponse,
  EnrolmentList: E.EnrolmentList,
  EnrolmentRequest: E.EnrolmentRequestItem,
  RevokeResult: E.RevokeResult,
  HubRolloutCreate: R.HubRolloutCreate,
  HubRolloutAction: R.HubRolloutAction,
  HubRolloutSummary: R.HubRolloutSummary,
  HubRolloutList: R.HubRolloutList,
  HubRolloutDetail: R.HubRolloutDetail,
} as const;

export type ComponentName = keyof typeof COMPONENTS;

interface Operation {
  summary: string;
  query?: z.ZodObject | z.ZodType;
  body?: ComponentName;
  response: ComponentName;
  /** 'operator' for mutations; reads need 'viewer'; login needs nothing. */
  role?: 'viewer' | 'operator' | 'none';
  pathParams?: string[];
  contentType?: string;
  /** The success status when it is not 200 (201 for a create). */
  status?: 201;
}

const OPERATIONS: Record<string, Partial<Record<'get' | 'post' | 'delete', Operation>>> = {
  '/api/v1/devices': { get: { summary: 'Devices, filtered, sorted and paged', query: S.DeviceListQuery, response: 'DeviceList' } },
  '/api/v1/devices/{deviceId}': {
    get: { summary: 'One device: inventory, latest status, health, fingerprints, identity conflict', response: 'DeviceDetail', pathParams: ['deviceId'] },
  },
  '/api/v1/devices/{deviceId}/history': {
    get: { summary: 'Status history, raw or as 5-minute or hourly rollups', query: S.HistoryQuery, response: 'History', pathParams: ['deviceId'] },
  },
  '/api/v1/devices/{deviceId}/identity-conflict': {
    delete: {
      summary: 'Clear the identity-conflict flag after a person decided (audited)',
      response: 'Ok',
      role: 'operator',
      pathParams: ['deviceId'],
    },
  },
  '/api/v1/events': { get: { summary: 'Events, newest first', query: S.EventsQuery, response: 'EventList' } },
  '/api/v1/results': { get: { summary: 'Command results, newest first', query: S.ResultsQuery, response: 'ResultList' } },
  '/api/v1/alerts': { get: { summary: 'Alerts, open and resolved, newest first', query: AlertsQuery, response: 'AlertList' } },
  '/api/v1/audit': { get: { summary: 'The audit log of mutations and logins, newest first', query: S.AuditQuery, response: 'AuditList', role: 'operator' } },
  '/api/v1/stream': {
    get: {
      summary: 'Server-Sent Events: each `data:` line is one StreamChange (device reported, online, offline, event, alert opened or resolved)',
      query: S.StreamQuery,
      response: 'StreamChange',
      contentType: 'text/event-stream',
    },
  },
  '/api/v1/login': { post: { summary: 'Log in; sets the HttpOnly, SameSite=Strict session cookie', body: 'LoginRequest', response: 'Me', role: 'none' } },
  '/api/v1/logout': { post: { summary: 'End this session', response: 'Ok' } },
  '/api/v1/me': { get: { summary: 'Who this request acts as', response: 'Me' } },
  '/api/v1/enrol': {
    post: { summary: 'A device enrols: Bearer = a bootstrap token; 200 issued, 202 pending, 403 refused', body: 'EnrolRequest', response: 'EnrolResponse', role: 'none' },
  },
  '/api/v1/enrol/renew': {
    post: { summary: 'A device renews: Bearer = its renewal credential (replaced by the answer)', body: 'EnrolRequest', response: 'EnrolResponse', role: 'none' },
  },
  '/api/v1/enrolments': { get: { summary: 'Enrolment requests, newest first (status=pending: the pending list)', query: E.EnrolmentListQuery, response: 'EnrolmentList', role: 'operator' } },
  '/api/v1/enrolments/{id}/approve': { post: { summary: 'Approve a pending enrolment (audited)', response: 'EnrolmentRequest', role: 'operator', pathParams: ['id'] } },
  '/api/v1/enrolments/{id}/deny': { post: { summary: 'Deny a pending enrolment (audited)', response: 'EnrolmentRequest', role: 'operator', pathParams: ['id'] } },
  '/api/v1/devices/{deviceId}/revoke': {
    post: { summary: "Revoke a device's certificates into the CRL, void its renewal credential, report its k3s node for removal", response: 'RevokeResult', role: 'operator', pathParams: ['deviceId'] },
  },
  '/api/v1/rollouts': {
    get: { summary: 'Rollouts the hub runs, newest first', response: 'HubRolloutList' },
    post: {
      summary: 'Start a rollout from commands the operator signed, one per device; the hub only releases them batch by batch (audited)',
      body: 'HubRolloutCreate',
      response: 'HubRolloutSummary',
      role: 'operator',
      status: 201,
    },
  },
  '/api/v1/rollouts/{rolloutId}': {
    get: { summary: 'One rollout: its batches and each device\'s outcome, times and detail', response: 'HubRolloutDetail', pathParams: ['rolloutId'] },
  },
  ...Object.fromEntries(
    R.HUB_ROLLOUT_ACTIONS.map((action) => [
      `/api/v1/rollouts/{rolloutId}/${action}`,
      { post: { summary: `${action[0]!.toUpperCase()}${action.slice(1)} the rollout (audited)`, body: 'HubRolloutAction', response: 'HubRolloutSummary', role: 'operator', pathParams: ['rolloutId'] } },
    ]),
  ),
};

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

function queryParameters(schema: z.ZodType): unknown[] {
  const object = jsonSchema(schema, 'input') as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
  return Object.entries(object.properties ?? {}).map(([name, property]) => ({
    name,
    in: 'query',
    required: object.required?.includes(name) ?? false,
    ...(typeof property.description === 'string' ? { description: property.description } : {}),
    schema: property,
  }));
}

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/ApiError' } } },
});

export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, methods] of Object.entries(OPERATIONS)) {
    paths[path] = {};
    for (const [method, op] of Object.entries(methods)) {
      const role = op.role ?? 'viewer';
      paths[path][method] = {
        summary: op.summary,
        ...(role === 'none' ? { security: [] } : { description: `Needs the role ${role}.` }),
        parameters: [
          ...(op.pathParams ?? []).map((name) => ({ name, in: 'path', required: true, schema: { type: 'string', maxLength: 63 } })),
          ...(op.query ? queryParameters(op.query) : []),
        ],
        ...(op.body
          ? { requestBody: { required: true, content: { 'application/json': { schema: { $ref: `#/components/schemas/${op.body}` } } } } }
          : {}),
        responses: {
          [op.status ?? 200]: { description: 'OK', content: { [op.contentType ?? 'application/json']: { schema: { $ref: `#/components/schemas/${op.response}` } } } },
          400: errorResponse('A malformed request; `field` names the parameter at fault'),
          ...(role === 'none' ? { 429: errorResponse('Too many failed logins') } : { 401: errorResponse('Not logged in') }),
          ...(role === 'operator' ? { 403: errorResponse('The role viewer may not do this') } : {}),
        },
      };
    }
  }
  return {
    openapi: '3.0.3',
    info: { title: 'fleetlet hub', version: FLEETLET_VERSION, description: 'The fleet as the hub stored it.' },
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(COMPONENTS).map(([name, schema]) => [name, jsonSchema(schema, 'output')])),
      securitySchemes: {
        token: { type: 'http', scheme: 'bearer', description: 'An API token from `fleetlet hub token create`' },
        session: { type: 'apiKey', in: 'cookie', name: 'fleetlet_session' },
      },
    },
    security: [{ token: [] }, { session: [] }],
  };
}
