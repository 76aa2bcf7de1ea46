import type { Server, ServerResponse } from 'node:http';
import type { Logger } from '../lib/logger.js';
import { closeServer, createLocalServer, send } from './local-server.js';

export interface Health {
  healthy: boolean;
  detail: Record<string, unknown>;
}

export interface LocalEndpointOptions {
  port: number;
  health: () => Health;
  metrics: () => string;
  logger: Logger;
}

const HOST = '127.0.0.1';

/**
 * /healthz and /metrics on 127.0.0.1 only. Every hostNetwork pod reaches 127.0.0.1, so nothing here identifies the
 * device (no id, serial or fingerprint): the full view is on the status socket (status-socket.ts). It serves GETs
 * of fixed paths and reads no request body;
 * connections and header sizes are bounded, and slow clients are cut off, so a local process cannot tie the
 * daemon up. A port that is taken does not stop the agent: the endpoint is a convenience, reporting is not.
 */
export class LocalEndpoint {
  private server: Server | undefined;

  constructor(private readonly options: LocalEndpointOptions) {}

  /** The port it listens on (useful with port 0), or undefined when it is not listening. */
  get port(): number | undefined {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : undefined;
  }

  async start(): Promise<void> {
    const server = createLocalServer(16, (path, res) => this.answer(path, res), this.options.logger, 'local HTTP endpoint');
    const listening = await new Promise<boolean>((resolve) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        this.options.logger.warn(
          { err: err.message, port: this.options.port },
          'local HTTP endpoint unavailable (/healthz, /metrics); the agent runs without it',
        );
        resolve(false);
      });
      server.listen(this.options.port, HOST, () => resolve(true));
    });
    if (listening) this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await closeServer(server);
  }

  private answer(path: string, res: ServerResponse): void {
    if (path === '/healthz') {
      const health = this.options.health();
      return send(res, health.healthy ? 200 : 503, 'application/json', `${JSON.stringify({ status: health.healthy ? 'ok' : 'unhealthy', ...health.detail })}\n`);
    }
    if (path === '/metrics') return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', this.options.metrics());
    return send(res, 404, 'text/plain', 'not found; try /healthz or /metrics\n');
  }
}
