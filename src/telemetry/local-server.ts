import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../lib/logger.js';

/**
 * What the two local read-only servers (the 127.0.0.1 endpoint and the status socket) share: bounded connections,
 * header sizes and timeouts so that a local process cannot tie the daemon up, GETs of fixed paths only, and a
 * close that does not wait for idle keep-alive clients.
 */
export function createLocalServer(maxConnections: number, answer: (path: string, res: ServerResponse) => void, logger: Logger, what: string): Server {
  const server = createServer({ maxHeaderSize: 8192, requestTimeout: 5000, headersTimeout: 5000 }, (req, res) =>
    serveGet(req, res, answer, logger, what),
  );
  server.maxConnections = maxConnections;
  server.keepAliveTimeout = 1000;
  return server;
}

function serveGet(req: IncomingMessage, res: ServerResponse, answer: (path: string, res: ServerResponse) => void, logger: Logger, what: string): void {
  try {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n', { allow: 'GET, HEAD' });
    answer((req.url ?? '/').split('?', 1)[0]!, res);
  } catch (err) {
    logger.error({ err }, `${what} failed to answer`);
    send(res, 500, 'text/plain', 'internal error\n');
  }
}

export function send(res: ServerResponse, code: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
