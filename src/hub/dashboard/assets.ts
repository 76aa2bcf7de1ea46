import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { DashboardBundle } from './bundle.js';

/**
 * The dashboard's static files, held in memory: the HTML shell and the two bundles under names carrying their
 * hash, so a browser may keep them for a year and still never runs a stale one. They carry no data and are served
 * without authentication; everything the pages show comes from the API, behind its session cookie.
 */
interface Asset {
  body: Buffer;
  gzip: Buffer;
  type: string;
  cache: string;
}

/** Scripts and styles from the hub itself only: no inline script, no other origin, no framing. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "img-src 'self' data:",
  "style-src 'self'",
  "script-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'content-security-policy': DASHBOARD_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

const IMMUTABLE = 'public, max-age=31536000, immutable';

export class DashboardAssets {
  private readonly files = new Map<string, Asset>();
  /** The hashed paths of the script and the stylesheet, as the shell names them. */
  readonly scriptPath: string;
  readonly stylePath: string;

  constructor(bundle: DashboardBundle) {
    this.scriptPath = `/assets/app.${shortHash(bundle.js)}.js`;
    this.stylePath = `/assets/app.${shortHash(bundle.css)}.css`;
    this.add(this.scriptPath, bundle.js, 'text/javascript; charset=utf-8', IMMUTABLE);
    this.add(this.stylePath, bundle.css, 'text/css; charset=utf-8', IMMUTABLE);
    // The shell is looked at on every visit (no-cache): it names the current hashed files.
    this.add('/', this.shell(), 'text/html; charset=utf-8', 'no-cache');
  }

  /** Bytes of each asset gzipped, as served to a browser that accepts gzip (for the benchmark). */
  gzipSizes(): Record<string, number> {
    return Object.fromEntries([...this.files].map(([path, asset]) => [path, asset.gzip.length]));
  }

  /** Answers a GET for one of the dashboard's paths and returns true; returns false for any other path. */
  serve(pathname: string, req: IncomingMessage, res: ServerResponse): boolean {
    const asset = this.files.get(pathname === '/index.html' ? '/' : pathname);
    if (!asset) return false;
    const gzip = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? asset.gzip : asset.body;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': asset.type,
      'content-length': body.length,
      'cache-control': asset.cache,
      vary: 'accept-encoding',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }

  private add(path: string, text: string, type: string, cache: string): void {
    const body = Buffer.from(text, 'utf8');
    this.files.set(path, { body, gzip: gzipSync(body, { level: 9 }), type, cache });
  }

  private shell(): string {
    return [
      '<!doctype html>',
      '<html lang="en">',
      '<head>',
      '<meta charset="utf-8">',
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
      '<meta name="color-scheme" content="light dark">',
      '<title>fleetlet hub</title>',
      // An empty icon: without one the browser asks for /favicon.ico, which the hub does not have.
      '<link rel="icon" href="data:,">',
      `<link rel="stylesheet" href="${this.stylePath}">`,
      `<script defer src="${this.scriptPath}"></script>`,
      '</head>',
      '<body><noscript>The fleetlet dashboard needs JavaScript.</noscript><div id="app"></div></body>',
      '</html>',
      '',
    ].join('\n');
  }
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
