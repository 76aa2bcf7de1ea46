import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import type { Server, ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import type { Logger } from '../lib/logger.js';
import { closeServer, createLocalServer, send } from './local-server.js';

/** The socket's name in the state directory; `fleetlet status` finds it there. */
export const STATUS_SOCKET_FILE = 'status.sock';

/** Linux's sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export interface StatusSocketOptions {
  path: string;
  /** The latest status and inventory as JSON: board serial and identity fingerprints included. */
  status: () => unknown;
  logger: Logger;
}

/**
 * The device's full view for `fleetlet status`, on a unix socket with mode 0600 in the state directory. Unlike
 * 127.0.0.1, which every hostNetwork pod reaches, only the agent's own user (and root) can connect. The directory
 * must be the agent's and writable by no one else, or another user could put a socket of their own in its place.
 * Like the TCP endpoint it is a convenience: when it cannot be served, the agent runs without it.
 */
export class StatusSocket {
  private server: Server | undefined;

  constructor(private readonly options: StatusSocketOptions) {}

  get listening(): boolean {
    return this.server !== undefined;
  }

  async start(): Promise<void> {
    const { path, logger } = this.options;
    const problem = this.unsafeBecause();
    if (problem) {
      logger.warn({ socket: path }, `status socket not served: ${problem}; \`fleetlet status\` reads the database instead`);
      return;
    }
    const server = createLocalServer(8, (path, res) => this.answer(path, res), logger, 'status socket');
    const listening = await new Promise<boolean>((resolve) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        logger.warn({ err: err.message, socket: path }, 'status socket unavailable; the agent runs without it');
        resolve(false);
      });
      // The socket is created with the umask's mode: 0177 leaves 0600 from the first instant, not after a chmod.
      const umask = process.umask(0o177);
      try {
        server.listen(path, () => resolve(true));
      } finally {
        process.umask(umask);
      }
    });
    if (!listening) return;
    chmodSync(path, 0o600);
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await closeServer(server);
    try {
      unlinkSync(this.options.path);
    } catch {
      // already gone
    }
  }

  /** Why the socket cannot safely be served, or undefined; removes a stale socket left by a previous run. */
  private unsafeBecause(): string | undefined {
    const { path } = this.options;
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) return `its path is longer than ${MAX_SOCKET_PATH_BYTES} bytes`;
    const dir = lstatSync(dirname(path), { throwIfNoEntry: false });
    if (!dir?.isDirectory()) return `${dirname(path)} is not a directory`;
    if (process.geteuid && dir.uid !== process.geteuid()) return `${dirname(path)} belongs to another user`;
    if ((dir.mode & 0o022) !== 0) return `${dirname(path)} is writable by group or others`;
    const existing = lstatSync(path, { throwIfNoEntry: false });
    if (existing && !existing.isSocket()) return `${path} exists and is not a socket`;
    // A crash leaves the socket file behind; listening needs the name free. Only this agent writes here.
    if (existing) unlinkSync(path);
    return undefined;
  }

  private answer(path: string, res: ServerResponse): void {
    if (path === '/status') return send(res, 200, 'application/json', `${JSON.stringify(this.options.status())}\n`);
    return send(res, 404, 'text/plain', 'not found; try /status\n');
  }
}
