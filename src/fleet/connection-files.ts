import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { errorReason, UsageError } from '../lib/errors.js';
import { isPlaintextBrokerUrl, isTlsBrokerUrl } from '../protocol/broker-url.js';
import { FleetAccessError } from './errors.js';

/** PEM files of a CA bundle, a certificate or a key are small; anything larger is the wrong file. */
const MAX_PEM_BYTES = 1024 * 1024;

/** The TLS material an operator names, each with the flag (or profile key) that named it, for messages. */
export interface TlsFiles {
  ca?: { file: string; flag: string };
  cert?: { file: string; flag: string };
  key?: { file: string; flag: string };
}

/**
 * Refuses a broker address the MQTT client would misread: `host:1883` parses as a URL whose scheme is `host:`, and
 * MQTT.js then fails with a parser error that names neither the flag nor the fix.
 */
export function checkBrokerUrl(url: string, flag: string): void {
  if (!isTlsBrokerUrl(url) && !isPlaintextBrokerUrl(url)) {
    throw new UsageError(`${flag} expects a URL with its scheme, mqtts://HOST:8883 (TLS) or mqtt://HOST:1883, got "${url}"`);
  }
}

/** Reads and checks each file before connecting, so that a problem names the file and the flag, not a TLS routine. */
export function readTlsFiles(files: TlsFiles): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const ca = files.ca ? readPem(files.ca, 'a CA certificate') : undefined;
  const cert = files.cert ? readPem(files.cert, 'a certificate') : undefined;
  const key = files.key ? readPem(files.key, 'a private key') : undefined;
  if (ca) parsed(files.ca!, () => new X509Certificate(ca), 'a CA certificate (PEM)');
  const certificate = cert ? parsed(files.cert!, () => new X509Certificate(cert), 'a certificate (PEM)') : undefined;
  const privateKey = key ? parsed(files.key!, () => createPrivateKey(key), 'a private key (PEM)') : undefined;
  if ((certificate === undefined) !== (privateKey === undefined)) {
    throw new UsageError(`a client certificate needs its key: give both ${files.cert?.flag ?? '--cert-file'} and ${files.key?.flag ?? '--tls-key-file'}`);
  }
  if (certificate && privateKey && !certificate.checkPrivateKey(privateKey)) {
    throw new UsageError(`${files.key!.flag} ${files.key!.file} is not the key of the certificate in ${files.cert!.flag} ${files.cert!.file}`);
  }
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}

/** A TLS failure of the handshake, said in terms of the files the operator gave. */
export function explainTlsFailure(err: unknown, broker: string, files: TlsFiles): FleetAccessError | undefined {
  const code = (err as { code?: string } | undefined)?.code ?? '';
  const text = err instanceof Error ? err.message : String(err);
  if (/CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(code)) {
    const ca = files.ca ? `the CA in ${files.ca.flag} ${files.ca.file}` : 'the system CAs (give the fleet CA with --ca-file)';
    return new FleetAccessError(`the certificate of ${broker} is not signed by ${ca}: ${text}`, { cause: err });
  }
  if (/alert (bad certificate|unknown ca|certificate required|certificate unknown)/i.test(text)) {
    const cert = files.cert ? `the certificate in ${files.cert.flag} ${files.cert.file}` : 'no client certificate (give --cert-file and --tls-key-file)';
    return new FleetAccessError(`${broker} refused ${cert}: ${text}`, { cause: err });
  }
  return undefined;
}

function readPem(named: { file: string; flag: string }, what: string): Buffer {
  let size: number;
  try {
    size = statSync(named.file).size;
  } catch (err) {
    throw new UsageError(`${named.flag} ${named.file}: cannot read ${what} there (${errorReason(err)})`);
  }
  if (size > MAX_PEM_BYTES) throw new UsageError(`${named.flag} ${named.file}: ${size} bytes is too large for ${what}`);
  try {
    return readFileSync(named.file);
  } catch (err) {
    throw new UsageError(`${named.flag} ${named.file}: cannot read ${what} there (${errorReason(err)})`);
  }
}

function parsed<T>(named: { file: string; flag: string }, parse: () => T, what: string): T {
  try {
    return parse();
  } catch {
    throw new UsageError(`${named.flag} ${named.file} does not hold ${what}`);
  }
}
