import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { FleetConnectionError } from './errors.js';

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
}

/** One MQTT connection for an operator command; the caller ends it. Fails fast instead of retrying forever. */
export async function connectOperator(options: FleetConnectionOptions): Promise<MqttClient> {
  const clientOptions: IClientOptions = {
    clientId: `fleetlet-operator-${randomBytes(6).toString('hex')}`,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    protocolVersion: 4,
  };
  if (options.username) clientOptions.username = options.username;
  if (options.passwordFile) clientOptions.password = readFileSync(options.passwordFile, 'utf8').trim();
  if (options.caFile) clientOptions.ca = readFileSync(options.caFile);
  if (options.certFile) clientOptions.cert = readFileSync(options.certFile);
  if (options.keyFile) clientOptions.key = readFileSync(options.keyFile);
  try {
    return await mqtt.connectAsync(options.broker, clientOptions, false);
  } catch (err) {
    throw new FleetConnectionError(`cannot connect to ${options.broker}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
}
