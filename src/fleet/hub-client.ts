import { readFileSync, statSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { z } from 'zod';
import { errorReason, isErrno, UsageError } from '../lib/errors.js';
import { DeviceList, StreamChange, type DeviceSummary } from '../protocol/hub-api.js';
import { AlertList } from '../protocol/hub-alerts-api.js';
import { HubApiError, HubRefusedError } from './errors.js';

/** How the operator tools reach the hub: its URL, a file holding an API token, optionally a CA for its certificate. */
export interface HubConnectionOptions {
  url: string;
  tokenFile: string;
  caFile?: string;
}

const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
const MAX_STREAM_LINE = 256 * 1024;
const PAGE = 500;

export class HubClient {
  private readonly token: string;
  private readonly ca: Buffer | undefined;

  constructor(private readonly options: HubConnectionOptions) {
    if (!/^https?:\/\//.test(options.url)) throw new UsageError(`--hub expects an http:// or https:// URL, not "${options.url}"`);
    this.token = readToken(options.tokenFile);
    this.ca = options.caFile ? readFileSync(options.caFile) : undefined;
  }

  /** Every device matching `query`, page by page. */
  async allDevices(query: Record<string, string | string[]>): Promise<DeviceSummary[]> {
    const devices: DeviceSummary[] = [];
    for (let offset = 0; ; offset += PAGE) {
      const page = await this.getJson(`/api/v1/devices?${search({ ...query, limit: String(PAGE), offset: String(offset) })}`, DeviceList);
      devices.push(...page.devices);
      if (page.devices.length < PAGE || devices.length >= page.total) return devices;
    }
  }

  /** The newest alerts matching `query` (at most `limit`, one page: the hub's page holds up to 500). */
  async alerts(query: Record<string, string>, limit: number): Promise<AlertList> {
    return this.getJson(`/api/v1/alerts?${search({ ...query, limit: String(limit) })}`, AlertList);
  }

  async getJson<S extends z.ZodType>(path: string, schema: S): Promise<z.output<S>> {
    return this.readJson(path, schema, await this.open(path, 'application/json'));
  }

  /** POSTs `body` as JSON (a rollout's signed commands can be megabytes) and reads the answer with `schema`. */
  async postJson<S extends z.ZodType>(path: string, body: unknown, schema: S): Promise<z.output<S>> {
    return this.readJson(path, schema, await this.open(path, 'application/json', JSON.stringify(body)));
  }

  private async readJson<S extends z.ZodType>(path: string, schema: S, res: IncomingMessage): Promise<z.output<S>> {
    const text = await readBounded(res);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new HubApiError(`${this.options.url}${path} did not answer with JSON`);
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new HubApiError(`${this.options.url}${path} answered in an unexpected shape: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }

  /** Calls `onChange` for each change of /api/v1/stream until `until` resolves; `onReady` once the stream is live. */
  async stream(query: Record<string, string>, until: Promise<void>, onChange: (change: StreamChange) => void, onReady: () => void): Promise<void> {
    const res = await this.open(`/api/v1/stream?${search(query)}`, 'text/event-stream');
    onReady();
    let buffer = '';
    const ended = new Promise<void>((resolve, reject) => {
      res.on('data', (chunk: Buffer) => {
        buffer += chunk.toString('utf8');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const data = /^data: (.*)$/m.exec(buffer.slice(0, end))?.[1];
          buffer = buffer.slice(end + 2);
          if (!data) continue;
          const parsed = StreamChange.safeParse(parseJson(data));
          if (parsed.success) onChange(parsed.data);
        }
        if (buffer.length > MAX_STREAM_LINE) reject(new HubApiError('the hub sent an oversized stream event'));
      });
      res.once('end', () => reject(new HubApiError('the hub ended the stream')));
      res.once('error', reject);
    });
    try {
      await Promise.race([until, ended]);
    } finally {
      res.destroy();
    }
  }

  private open(path: string, accept: string, body?: string): Promise<IncomingMessage> {
    const url = new URL(path, this.options.url);
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: body === undefined ? 'GET' : 'POST',
          headers: {
            authorization: `Bearer ${this.token}`,
            accept,
            ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }),
          },
          timeout: 15_000,
          ...(this.ca ? { ca: this.ca } : {}),
        },
        (res) => {
          if (res.statusCode === 200 || res.statusCode === 201) return resolve(res);
          void readBounded(res)
            .catch(() => '')
            .then((text) => {
              const message = `${url.origin}${url.pathname}: HTTP ${res.statusCode} ${errorOf(text)}`;
              const refused = res.statusCode !== undefined && res.statusCode >= 400 && res.statusCode < 500 && res.statusCode !== 429;
              reject(refused ? new HubRefusedError(message) : new HubApiError(message));
            });
        },
      );
      // Only until the answer starts: a stream may stay quiet for long.
      req.once('response', () => req.setTimeout(0));
      req.once('timeout', () => req.destroy(new HubApiError(`${url.origin} did not answer within 15 s`)));
      req.once('error', (err) => {
        if (err instanceof HubApiError) return reject(err);
        // An untrusted or mismatched certificate stays so on the next attempt: a fix of --hub-ca-file is needed.
        const untrusted = isErrno(err) && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(err.code);
        const message = `cannot reach the hub at ${url.origin}: ${err.message}`;
        reject(untrusted ? new HubRefusedError(message) : new HubApiError(message));
      });
      req.end(body);
    });
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function search(query: Record<string, string | string[]>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
  return params.toString();
}

function errorOf(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: unknown };
    return typeof body.error === 'string' ? body.error.slice(0, 300) : '';
  } catch {
    return '';
  }
}

async function readBounded(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_RESPONSE_BYTES) throw new HubApiError(`the hub's answer is larger than ${MAX_RESPONSE_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function readToken(file: string): string {
  try {
    if (statSync(file).size > 4096) throw new UsageError(`${file} is larger than 4096 bytes`);
    const token = readFileSync(file, 'utf8').trim();
    if (!/^[A-Za-z0-9_-]{8,200}$/.test(token)) throw new UsageError(`${file} does not hold an API token (fleetlet hub token create prints one)`);
    return token;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`cannot read the token file ${file}: ${errorReason(err)}`);
  }
}
