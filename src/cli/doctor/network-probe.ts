import { readFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { connect as connectTls, type PeerCertificate } from 'node:tls';
import { errorReason } from '../../lib/errors.js';
import { connect, type IClientOptions } from 'mqtt';
import { brokerEndpoint } from '../../protocol/broker-url.js';

export interface TlsOptions {
  ca?: string;
  cert?: string;
  key?: string;
  serverName?: string;
  /** false for k3s: its certificate is checked by k3s itself against the CA hash in the token. */
  verify: boolean;
}

export type ProbeResult =
  | { ok: true; peerCertificate?: { validTo: string; subject: string } }
  | { ok: false; error: string };

/** How doctor reaches the broker and the k3s server; tests give it loopback servers. */
export interface NetworkProbe {
  tcp(host: string, port: number): Promise<ProbeResult>;
  tls(host: string, port: number, options: TlsOptions): Promise<ProbeResult>;
  /** An MQTT CONNECT as this device would send it (its certificate or credentials); ok once the broker accepted it. */
  mqtt(url: string, options: IClientOptions): Promise<ProbeResult>;
}

export function createNetworkProbe(timeoutMs = 5000): NetworkProbe {
  return {
    tcp: (host, port) =>
      settle(timeoutMs, (done) => {
        const socket = connectTcp({ host, port }, () => done(socket, { ok: true }));
        return socket;
      }),
    tls: (host, port, options) =>
      settle(timeoutMs, (done) => {
        const socket = connectTls(
          {
            host,
            port,
            servername: options.serverName ?? (isIp(host) ? undefined : host),
            ca: options.ca ? readFileSync(options.ca) : undefined,
            cert: options.cert ? readFileSync(options.cert) : undefined,
            key: options.key ? readFileSync(options.key) : undefined,
            rejectUnauthorized: options.verify,
          },
          () => done(socket, { ok: true, peerCertificate: summarize(socket.getPeerCertificate()) }),
        );
        return socket;
      }),
    mqtt: (url, options) => mqttAccepts(url, options, timeoutMs),
  };
}

/**
 * Connects with a clean session and a client id of its own, so a running agent's session is neither taken over nor
 * left with anything, and disconnects at once. A broker that refuses the client certificate often still completes
 * the TLS handshake on the client's side (TLS 1.3) and only then drops the connection: only a CONNACK proves it.
 */
async function mqttAccepts(url: string, options: IClientOptions, timeoutMs: number): Promise<ProbeResult> {
  const client = connect({ ...brokerEndpoint(url), ...options, clean: true, reconnectPeriod: 0, connectTimeout: timeoutMs, protocolVersion: 4 });
  const result = await new Promise<ProbeResult>((resolve) => {
    client.once('connect', () => resolve({ ok: true }));
    client.once('error', (err: Error & { code?: unknown }) => {
      const code = typeof err.code === 'string' ? err.code : undefined;
      resolve({ ok: false, error: code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message });
    });
    client.once('close', () => resolve({ ok: false, error: 'the broker closed the connection before accepting it' }));
  });
  client.end(true);
  return result;
}

function settle(
  timeoutMs: number,
  open: (done: (socket: { destroy(): void }, result: ProbeResult) => void) => { destroy(): void; on(event: 'error', listener: (err: Error) => void): unknown },
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let finished = false;
    const done = (socket: { destroy(): void }, result: ProbeResult) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const socket = open(done);
    const timer = setTimeout(() => done(socket, { ok: false, error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    socket.on('error', (err: Error) => done(socket, { ok: false, error: errorReason(err) }));
  });
}

function summarize(certificate: PeerCertificate): { validTo: string; subject: string } | undefined {
  if (!certificate || !certificate.valid_to) return undefined;
  const cn = certificate.subject?.CN;
  return { validTo: certificate.valid_to, subject: Array.isArray(cn) ? cn.join(',') : (cn ?? '') };
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
