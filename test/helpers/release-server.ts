import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local stand-in for GitHub releases and the k3s channel server on 127.0.0.1: artifacts under
 * `/download/<version>/<file>` (the version URL-encoded like install.sh does) and channels under `/channels/<name>`,
 * answered with a 302 like rancher/channelserver. Faults are set per file.
 */
export type Fault =
  | { kind: 'status'; status: number }
  /** Announces the full Content-Length, sends `bytes` of it, then drops the connection. */
  | { kind: 'truncate'; bytes: number }
  /** Sends the body without a Content-Length (chunked). */
  | { kind: 'no-length' }
  /** Announces the full Content-Length, sends `bytes` of it, then sends nothing more and keeps the connection open. */
  | { kind: 'stall'; bytes: number }
  /** Sends `bytes` every `everyMs` (never silent for long), so only an overall deadline ends it. */
  | { kind: 'trickle'; bytes: number; everyMs: number };

export interface ReleaseServer {
  artifactUrl: string;
  channelUrl: string;
  /** Publishes a release: its files and a sha256sum-<arch>.txt listing them (unless `checksums` is given). */
  publish(version: string, files: Record<string, Buffer | string>, options?: { arch?: string; checksums?: string }): void;
  setChannel(name: string, version: string): void;
  fault(version: string, file: string, fault: Fault | undefined): void;
  requests: string[];
  close(): Promise<void>;
}

export function sha256(content: Buffer | string): string {
  return createHash('sha256').update(content).digest('hex');
}

export function checksumFile(files: Record<string, Buffer | string>): string {
  return Object.entries(files)
    .map(([name, content]) => `${sha256(content)}  ${name}\n`)
    .join('');
}

export async function startReleaseServer(): Promise<ReleaseServer> {
  const files = new Map<string, Buffer>();
  const faults = new Map<string, Fault>();
  const channels = new Map<string, string>();
  const requests: string[] = [];
  const key = (version: string, file: string) => `/download/${encodeURIComponent(version)}/${file}`;

  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    requests.push(path);
    // No keep-alive: a test that blocks the event loop (execFileSync) would otherwise race the idle-socket timeout.
    res.shouldKeepAlive = false;
    const channel = /^\/channels\/([^/]+)$/.exec(path);
    if (channel) {
      const version = channels.get(channel[1]!);
      if (!version) return void res.writeHead(404).end('channel not found');
      return void res
        .writeHead(302, { location: `https://github.com/k3s-io/k3s/releases/tag/${encodeURIComponent(version)}` })
        .end();
    }
    const content = files.get(path);
    const fault = faults.get(path);
    if (fault?.kind === 'status') return void res.writeHead(fault.status).end(`status ${fault.status}`);
    if (!content) return void res.writeHead(404).end('Not Found');
    if (fault?.kind === 'no-length') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return void res.end(content);
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': content.length });
    if (fault?.kind === 'truncate') {
      res.write(content.subarray(0, fault.bytes), () => res.destroy());
      return;
    }
    if (fault?.kind === 'stall') return void res.write(content.subarray(0, fault.bytes));
    if (fault?.kind === 'trickle') {
      let sent = 0;
      const timer = setInterval(() => {
        if (res.destroyed || sent >= content.length) return clearInterval(timer);
        res.write(content.subarray(sent, (sent += fault.bytes)));
      }, fault.everyMs);
      res.once('close', () => clearInterval(timer));
      return;
    }
    res.end(content);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    artifactUrl: `${base}/download`,
    channelUrl: `${base}/channels`,
    publish(version, published, options = {}) {
      for (const [name, content] of Object.entries(published)) files.set(key(version, name), Buffer.from(content));
      const arch = options.arch ?? 'amd64';
      files.set(key(version, `sha256sum-${arch}.txt`), Buffer.from(options.checksums ?? checksumFile(published)));
    },
    setChannel: (name, version) => void channels.set(name, version),
    fault(version, file, fault) {
      if (fault) faults.set(key(version, file), fault);
      else faults.delete(key(version, file));
    },
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
