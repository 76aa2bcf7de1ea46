import { readFileSync, statSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { IClientOptions } from 'mqtt';
import type { Config } from '../config/schema.js';
import { ConfigError, errorReason } from '../lib/errors.js';
import { isTlsBrokerUrl } from '../protocol/broker-url.js';
import type { TlsKey } from '../identity/device-key-store.js';

/** Certificates and keys are small; a bound keeps a wrong path (a log, a device file) from being slurped. */
const MAX_PEM_BYTES = 256 * 1024;

export interface Will {
  topic: string;
  payload: string;
}

/**
 * MQTT.js options for one connection attempt. TLS files are read on every attempt so that a rotated certificate
 * takes effect at the next reconnect. MQTT.js's own reconnect stays off (reconnectPeriod 0): the link paces
 * reconnects with jittered backoff instead. Throws ConfigError when a file is unreadable or the client
 * certificate names another device. `enrolled`, when given, replaces the certificate and key files (enrolment).
 */
export function clientOptions(
  broker: Config['broker'],
  deviceId: string,
  will: Will,
  enrolled?: { cert: Buffer; key: TlsKey },
): IClientOptions {
  const keepalive = broker.keepaliveSeconds;
  const options: IClientOptions = {
    clientId: deviceId,
    protocolVersion: 4,
    // A persistent session: the broker keeps the command subscriptions and queues commands (QoS 1) while the
    // device is away, and hands them over at the next connect. Reports need no such help: they wait in the outbox.
    clean: false,
    keepalive,
    reconnectPeriod: 0,
    connectTimeout: Math.min(30_000, keepalive * 1500),
    resubscribe: false,
    queueQoSZero: false,
    // Without this, mqtt-packet builds a table of 65,536 two-byte Buffers (about 7 MiB of heap, for good) to save
    // one small allocation per packet id: a poor trade for a device that sends a few messages a minute.
    writeCache: false,
    will: { topic: will.topic, payload: Buffer.from(will.payload), qos: 1, retain: true },
  };
  if (broker.auth.username) options.username = broker.auth.username;
  if (broker.auth.password) options.password = broker.auth.password.reveal();
  if (isTlsBrokerUrl(broker.url)) {
    const { caFile, certFile, keyFile, serverName } = broker.tls;
    options.rejectUnauthorized = true;
    if (caFile) options.ca = readPem(caFile, 'broker.tls.caFile');
    if (enrolled) {
      checkCertificateIdentity(enrolled.cert, 'enrolment', deviceId);
      Object.assign(options, { cert: enrolled.cert, ...enrolled.key });
    } else if (certFile) {
      const cert = readPem(certFile, 'broker.tls.certFile');
      checkCertificateIdentity(cert, certFile, deviceId);
      options.cert = cert;
    }
    if (keyFile && !enrolled) options.key = readPem(keyFile, 'broker.tls.keyFile');
    if (serverName) options.servername = serverName;
  }
  return options;
}

function readPem(file: string, key: string): Buffer {
  try {
    const size = statSync(file).size;
    if (size > MAX_PEM_BYTES) throw new Error(`larger than ${MAX_PEM_BYTES} bytes`);
    return readFileSync(file);
  } catch (err) {
    const reason = errorReason(err);
    throw new ConfigError([{ path: key, source: file, message: `cannot read: ${reason}` }]);
  }
}

/**
 * The broker maps the certificate's common name to the device's topics (see the ACL template), so a certificate
 * issued to another device would have this one write under someone else's name or be silently denied. Refuse it
 * here, where the message can be clear.
 */
function checkCertificateIdentity(pem: Buffer, file: string, deviceId: string): void {
  let subject: string;
  try {
    subject = new X509Certificate(pem).subject;
  } catch {
    throw new ConfigError([{ path: 'broker.tls.certFile', source: file, message: 'not a PEM certificate' }]);
  }
  const commonName = commonNameOf(subject);
  if (commonName !== deviceId) {
    throw new ConfigError([
      {
        path: 'broker.tls.certFile',
        source: file,
        message: `the certificate is issued to "${commonName ?? '(no common name)'}", not to this device "${deviceId}"`,
      },
    ]);
  }
}

function commonNameOf(subject: string): string | undefined {
  return /^CN=(.*)$/m.exec(subject)?.[1];
}

/** The common name of a client certificate file, or undefined when it cannot be read as one. */
export function certificateCommonName(file: string): string | undefined {
  try {
    return commonNameOf(new X509Certificate(readPem(file, 'broker.tls.certFile')).subject);
  } catch {
    return undefined;
  }
}

/**
 * Whether a failed connection attempt was the broker refusing the client certificate (a TLS alert, or a CONNACK
 * "not authorized") rather than the network: only then is a renewed certificate given up for the previous one.
 */
export function isCredentialRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && /^ERR_SSL_.*(ALERT|CERTIFICATE)/.test(code)) return true;
  if (code === 4 || code === 5 || code === 0x86 || code === 0x87) return true;
  return err instanceof Error && /alert (bad|unknown|certificate)|certificate (required|unknown|revoked|expired)|not authori[sz]ed/i.test(err.message);
}
