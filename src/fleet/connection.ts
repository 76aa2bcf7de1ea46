import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { checkBrokerUrl, explainTlsFailure, readTlsFiles, type TlsFiles } from './connection-files.js';
import { FleetConnectionError } from './errors.js';
import { errorMessage } from '../lib/errors.js';
import { brokerEndpoint } from '../protocol/broker-url.js';

/** How the operator's machine reaches the broker. */
export interface FleetConnectionOptions {
  broker: string;
  topicRoot: string;
  username?: string;
  /** Read from a file, never from the command line (it would show in ps and shell history). */
  passwordFile?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  connectTimeoutMs?: number;
  /** Where each setting came from (a flag or the operator profile), named in error messages; flags by default. */
  origin?: Partial<Record<'broker' | 'caFile' | 'certFile' | 'keyFile', string>>;
}

/** One MQTT connection for an operator command; the caller ends it. Fails fast instead of retrying forever. */
export async function connectOperator(options: FleetConnectionOptions): Promise<MqttClient> {
  const clientOptions: IClientOptions = {
    clientId: operatorClientId(options.username),
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    protocolVersion: 4,
  };
  if (options.username) clientOptions.username = options.username;
  if (options.passwordFile) clientOptions.password = readFileSync(options.passwordFile, 'utf8').trim();
  const origin = options.origin ?? {};
  checkBrokerUrl(options.broker, origin.broker ?? '--broker');
  const files: TlsFiles = {
    ...(options.caFile ? { ca: { file: options.caFile, flag: origin.caFile ?? '--ca-file' } } : {}),
    ...(options.certFile ? { cert: { file: options.certFile, flag: origin.certFile ?? '--cert-file' } } : {}),
    ...(options.keyFile ? { key: { file: options.keyFile, flag: origin.keyFile ?? '--tls-key-file' } } : {}),
  };
  Object.assign(clientOptions, readTlsFiles(files));
  try {
    // No URL text for MQTT.js to parse (see brokerEndpoint); the overload with allowRetries takes one, so it gets ''.
    return await mqtt.connectAsync('', { ...brokerEndpoint(options.broker), ...clientOptions }, false);
  } catch (err) {
    throw explainTlsFailure(err, options.broker, files) ?? new FleetConnectionError(`cannot connect to ${options.broker}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

/**
 * `<user>-<random>`: unique per process, so two tools run with one operator certificate (on the broker's operator
 * listener, which keeps the client's id) do not take each other's session; the user part makes broker logs readable.
 */
export function operatorClientId(username?: string): string {
  let user = username;
  try {
    user ??= userInfo().username;
  } catch {
    // no passwd entry (a container): the random part alone keeps it unique
  }
  const safe = (user ?? 'operator').replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 32) || 'operator';
  return `${safe}-${randomBytes(6).toString('hex')}`;
}
