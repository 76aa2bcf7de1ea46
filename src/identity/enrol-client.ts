import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { EnrolRequest, EnrolResponse, ENROL_PATH, ENROLMENT_SCHEMA_VERSION, RENEW_PATH } from '../protocol/enrolment.js';
import { errorMessage } from '../lib/errors.js';
import { EnrolmentHubError } from './errors.js';

/**
 * The device's side of the hub's enrolment API (protocol/enrolment.ts): one POST, its answer validated. The
 * credential goes only in the Authorization header of a TLS connection checked against the fleet's CA.
 */
export interface EnrolClientOptions {
  hubUrl: string;
  /** PEM of the CA the hub's HTTPS certificate chains to. */
  hubCaPem: string;
  timeoutMs?: number;
}

export type EnrolKind = 'enrol' | 'renew';

const MAX_RESPONSE_BYTES = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 30_000;

export class EnrolClient {
  constructor(private readonly options: EnrolClientOptions) {}

  /**
   * Sends a CSR with the bootstrap token (`enrol`) or the renewal credential (`renew`). Resolves with the hub's
   * answer (issued, pending or refused); throws EnrolmentHubError when the hub cannot be reached or answers
   * outside the contract.
   */
  async send(
    kind: EnrolKind,
    credential: string,
    body: { deviceId: string; csrPem: string; fingerprint?: string },
    signal?: AbortSignal,
  ): Promise<EnrolResponse> {
    const payload = JSON.stringify(EnrolRequest.parse({ schemaVersion: ENROLMENT_SCHEMA_VERSION, ...body }));
    // Relative to the hub URL, so that a hub behind a proxy path (https://example.net/hub/) is reached there.
    const base = this.options.hubUrl.endsWith('/') ? this.options.hubUrl : `${this.options.hubUrl}/`;
    const url = new URL((kind === 'enrol' ? ENROL_PATH : RENEW_PATH).slice(1), base);
    const { status, text } = await this.#post(url, credential, payload, signal);
    if (![200, 202, 401, 403].includes(status)) {
      throw new EnrolmentHubError(`the hub answered ${kind} with HTTP ${status}`);
    }
    const response = EnrolResponse.safeParse(parseJson(text));
    if (!response.success) {
      // A 401/403 from a proxy or an older hub carries no EnrolResponse; it still is a refusal.
      if (status === 401 || status === 403) return { status: 'refused', reason: `HTTP ${status}` };
      throw new EnrolmentHubError(`the hub's answer to ${kind} (HTTP ${status}) is not an enrolment response`);
    }
    const expected = { 200: 'issued', 202: 'pending', 401: 'refused', 403: 'refused' }[status as 200 | 202 | 401 | 403];
    if (response.data.status !== expected) throw new EnrolmentHubError(`the hub answered ${kind} with HTTP ${status} but "${response.data.status}"`);
    return response.data;
  }

  #post(url: URL, credential: string, payload: string, signal?: AbortSignal): Promise<{ status: number; text: string }> {
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${credential}`, 'content-length': Buffer.byteLength(payload) },
          ...(url.protocol === 'https:' ? { ca: this.options.hubCaPem, rejectUnauthorized: true } : {}),
          timeout: this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let bytes = 0;
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            if (bytes > MAX_RESPONSE_BYTES) {
              req.destroy(new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (err) => reject(hubError(url, err)));
        },
      );
      req.on('timeout', () => req.destroy(new Error('no answer in time')));
      req.on('error', (err) => reject(hubError(url, err)));
      req.end(payload);
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

/** Names the hub by origin only and says why; the credential is in no message. */
function hubError(url: URL, err: unknown): EnrolmentHubError {
  const code = (err as { code?: unknown }).code;
  return new EnrolmentHubError(`cannot reach the hub at ${url.origin}: ${typeof code === 'string' ? `${code} ` : ''}${errorMessage(err)}`, { cause: err });
}
