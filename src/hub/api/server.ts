import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../../lib/logger.js';
import type { HubHttpConfig } from '../../config/hub-http-schema.js';
import type { HubDatabase } from '../db/open.js';
import type { DashboardAssets } from '../dashboard/assets.js';
import { login, logout, sessionPrincipal, SESSION_COOKIE, tokenPrincipal, audit, type Principal } from '../auth/sessions.js';
import { ALERT_ROUTES } from './alert-routes.js';
import { ChangeFeed } from './change-feed.js';
import { ApiRequestError, HubApiListenError } from './errors.js';
import { cookieValue, MAX_URL_BYTES, parseInput, queryObject, readJsonBody, sendError, sendJson } from './http-io.js';
import { renderMetrics, type ApiCounters } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { DATA_ROUTES, type Route, type RouteContext } from './routes.js';
import { enrolmentDeviceRoutes, enrolmentOperatorRoutes, type DeviceRoute } from './enrolment-routes.js';
import type { EnrolmentAuthority } from '../enrolment/enrolment-authority.js';
import { ROLLOUT_ROUTES } from './rollout-routes.js';
import * as S from '../../protocol/hub-api.js';
import { changedDevice } from '../../protocol/changed-device.js';

export interface HubApiOptions {
  hub: HubDatabase;
  http: HubHttpConfig;
  logger: Logger;
  now?: () => number;
  /** The Prometheus text of the ingest running in this process (RunningHub.metricsText), appended to /metrics. */
  ingestMetricsText?: () => Promise<string>;
  /** How often the live stream looks at the database. */
  streamPollMs?: number;
  /** The web dashboard's static files, served without authentication (they hold no data). */
  dashboard?: DashboardAssets;
  /** The fleet CA (hub.enrolment); without it the enrol routes answer 503. */
  enrolment?: EnrolmentAuthority;
}

const MAX_STREAM_CLIENTS = 200;
const STREAM_HEARTBEAT_MS = 15_000;

/**
 * The hub's HTTP API on node:http (or node:https when hub.http has a certificate): authentication first, then the
 * route. Everything but the OpenAPI document needs a session cookie or an API token; mutations need the role
 * operator and, from a cookie session, an Origin of the hub itself (SameSite=Strict already keeps other sites'
 * cookies out; the Origin check covers browsers and proxies that do not honour it).
 */
export class HubApiServer {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly feed: ChangeFeed;
  private readonly counters: ApiCounters;
  private readonly now: () => number;
  private readonly tls: boolean;
  private readonly routes: Route[];
  private readonly deviceRoutes: DeviceRoute[];

  constructor(private readonly options: HubApiOptions) {
    this.now = options.now ?? Date.now;
    this.tls = options.http.tlsCertFile !== undefined;
    this.feed = new ChangeFeed(options.hub, {
      pollMs: options.streamPollMs ?? 1000,
      // A report is committed within hub.batch.maxWaitMs and one commit of its receipt; 10 s leaves room for a slow commit.
      lookBackMs: 10_000,
      now: this.now,
      onError: (err) => options.logger.warn({ err }, 'the live stream could not read the database'),
    });
    this.counters = { requests: new Map(), loginFailures: 0, streamClients: () => this.feed.listenerCount };
    this.routes = [...DATA_ROUTES, ...ALERT_ROUTES, ...ROLLOUT_ROUTES, ...this.ownRoutes(), ...enrolmentOperatorRoutes(options.enrolment)];
    this.deviceRoutes = enrolmentDeviceRoutes(options.enrolment);
  }

  /** Listens on hub.http.listen; resolves with the base URL (the real port when the config said 0). */
  async start(): Promise<string> {
    const { http } = this.options;
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    const server = this.tls ? createHttpsServer(this.tlsFiles(), handler) : createHttpServer(handler);
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.maxHeadersCount = 64;
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    const at = http.listen.lastIndexOf(':');
    const host = http.listen.slice(0, at).replace(/^\[|\]$/g, '');
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new HubApiListenError(`the hub API cannot listen on ${http.listen} (hub.http.listen): ${err.code ?? err.message}`, { cause: err })),
      );
      server.listen(Number(http.listen.slice(at + 1)), host, () => resolve());
    });
    this.server = server;
    const port = (server.address() as AddressInfo).port;
    const url = `${this.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.options.logger.info({ url }, 'hub API listening');
    return url;
  }

  private tlsFiles(): { cert: Buffer; key: Buffer } {
    const { tlsCertFile, tlsKeyFile } = this.options.http;
    try {
      return { cert: readFileSync(tlsCertFile!), key: readFileSync(tlsKeyFile!) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new HubApiListenError(`cannot read hub.http.tlsCertFile ${tlsCertFile} or tlsKeyFile ${tlsKeyFile}: ${code}`, { cause: err });
    }
  }

  async stop(): Promise<void> {
    this.feed.stop();
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Streams never end by themselves: close every connection, idle or not.
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.once('finish', () => this.counters.requests.set(String(res.statusCode), (this.counters.requests.get(String(res.statusCode)) ?? 0) + 1));
    try {
      await this.route(req, res);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
      } else if (err instanceof ApiRequestError) {
        sendError(res, err);
      } else {
        this.options.logger.error({ err, url: req.url?.slice(0, 200) }, 'hub API request failed');
        sendJson(res, 500, { error: 'internal error' });
      }
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if ((req.url ?? '').length > MAX_URL_BYTES) throw new ApiRequestError(400, `the URL is longer than ${MAX_URL_BYTES} bytes`);
    const url = new URL(req.url ?? '/', 'http://hub.invalid');
    const now = this.now();
    const remoteAddr = req.socket.remoteAddress ?? 'unknown';
    if (req.method === 'GET' && url.pathname === '/api/v1/openapi.json') return sendJson(res, 200, openApiDocument());
    if ((req.method === 'GET' || req.method === 'HEAD') && this.options.dashboard?.serve(url.pathname, req, res)) return;
    if (req.method === 'POST' && url.pathname === '/api/v1/login') return this.login(req, res, remoteAddr, now);
    // Enrolment authenticates devices by their own credentials, which count nowhere else (and API tokens not there).
    const deviceRoute = this.deviceRoutes.find((r) => r.method === req.method && r.pattern.test(url.pathname));
    if (deviceRoute) return deviceRoute.handle({ req, res, remoteAddr, now });

    const candidates = this.routes.filter((r) => r.pattern.test(url.pathname));
    if (candidates.length === 0) throw new ApiRequestError(404, `no such resource ${url.pathname.slice(0, 200)}`);
    const route = candidates.find((r) => r.method === req.method);
    if (!route) throw new ApiRequestError(405, `${req.method} is not allowed here`);

    const principal = await this.authenticate(req, now);
    if (route.operatorOnly && principal.role !== 'operator') throw new ApiRequestError(403, 'this needs the role operator');
    if (route.mutation) {
      if (principal.role !== 'operator') throw new ApiRequestError(403, 'the role viewer may not change anything');
      if (principal.via === 'session') this.checkOrigin(req, true);
    }
    const params = route.pattern.exec(url.pathname)!.slice(1);
    await route.handle({ req, res, url, params, principal, remoteAddr, hub: this.options.hub, now });
  }

  private async authenticate(req: IncomingMessage, now: number): Promise<Principal> {
    const authorization = req.headers.authorization;
    if (authorization !== undefined) {
      const match = /^Bearer ([A-Za-z0-9_-]{8,200})$/.exec(authorization);
      const principal = match ? await tokenPrincipal(this.options.hub, match[1]!, now) : undefined;
      if (!principal) throw new ApiRequestError(401, 'the API token is not valid (unknown, revoked or expired)');
      return principal;
    }
    const session = cookieValue(req, SESSION_COOKIE);
    const principal = session && session.length <= 200 ? await sessionPrincipal(this.options.hub, session, now) : undefined;
    if (!principal) throw new ApiRequestError(401, 'log in (POST /api/v1/login) or give an API token (Authorization: Bearer)');
    return principal;
  }

  /** A cookie-carrying mutation must come from the hub's own origin; `required` refuses a missing Origin too. */
  private checkOrigin(req: IncomingMessage, required: boolean): void {
    const origin = req.headers.origin;
    if (origin === undefined) {
      if (required) throw new ApiRequestError(403, 'a change made with a session cookie needs an Origin header');
      return;
    }
    const own = this.options.http.publicOrigin ?? `${this.tls ? 'https' : 'http'}://${req.headers.host ?? ''}`;
    if (origin !== new URL(own).origin) throw new ApiRequestError(403, `requests from ${origin.slice(0, 200)} may not change anything here`);
  }

  private async login(req: IncomingMessage, res: ServerResponse, remoteAddr: string, now: number): Promise<void> {
    this.checkOrigin(req, false);
    const request = parseInput(S.LoginRequest, await readJsonBody(req));
    const { http } = this.options;
    let result;
    try {
      result = await login(
        this.options.hub,
        request,
        remoteAddr,
        { sessionHours: http.sessionHours, maxFailures: http.loginMaxFailures, windowSeconds: http.loginWindowSeconds },
        now,
      );
    } catch (err) {
      if (err instanceof ApiRequestError) this.counters.loginFailures += 1;
      throw err;
    }
    const cookie = [
      `${SESSION_COOKIE}=${result.session}`,
      'Path=/',
      'HttpOnly',
      'SameSite=Strict',
      `Max-Age=${http.sessionHours * 3600}`,
      ...(this.tls ? ['Secure'] : []),
    ].join('; ');
    const { principal } = result;
    sendJson(
      res,
      200,
      { username: principal.username, role: principal.role, via: 'session', expiresAt: new Date(principal.expiresAtMs!).toISOString() },
      { 'set-cookie': cookie },
    );
  }

  private ownRoutes(): Route[] {
    return [
      {
        method: 'POST',
        pattern: /^\/api\/v1\/logout$/,
        // Ends only the caller's own session, so a viewer may do it too; still audited and origin-checked.
        mutation: false,
        handle: async ({ req, res, principal, remoteAddr, now }) => {
          const session = cookieValue(req, SESSION_COOKIE);
          if (principal.via === 'session' && session) {
            this.checkOrigin(req, true);
            await logout(this.options.hub, session);
          }
          await audit(this.options.hub, { actor: principal.username, action: 'logout', target: null, remoteAddr }, now);
          sendJson(res, 200, { ok: true }, { 'set-cookie': `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0` });
        },
      },
      { method: 'GET', pattern: /^\/api\/v1\/stream$/, mutation: false, handle: (context) => this.stream(context) },
      {
        method: 'GET',
        pattern: /^\/metrics$/,
        mutation: false,
        handle: async ({ res, now }) => {
          const ingest = await this.options.ingestMetricsText?.();
          const text = await renderMetrics(this.options.hub, this.counters, ingest, now);
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' });
          res.end(text);
        },
      },
    ];
  }

  /** Server-Sent Events: one `event: <type>` / `data: <StreamChange JSON>` per change, a comment as heartbeat. */
  private async stream({ req, res, url }: RouteContext): Promise<void> {
    const { device } = parseInput(S.StreamQuery, queryObject(url));
    if (this.feed.listenerCount >= MAX_STREAM_CLIENTS) throw new ApiRequestError(503, 'too many open streams');
    const unsubscribe = await this.feed.subscribe((change) => {
      const deviceId = changedDevice(change);
      if (device && deviceId !== device) return;
      res.write(`event: ${change.type}\ndata: ${JSON.stringify(change)}\n\n`);
    });
    if (req.socket.destroyed) return unsubscribe();
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    // The first bytes say the stream is live: every change committed from now on will be sent.
    res.write(': fleetlet hub stream\n\n');
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), STREAM_HEARTBEAT_MS);
    await new Promise<void>((resolve) => req.socket.once('close', () => resolve()));
    clearInterval(heartbeat);
    unsubscribe();
  }
}
