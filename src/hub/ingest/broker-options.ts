import { readFileSync, statSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';
import type { Config } from '../../config/schema.js';
import { ConfigError } from '../../lib/errors.js';

const MAX_PEM_BYTES = 256 * 1024;

/** How the hub authenticates to the broker: the `broker` section's credentials and TLS files (the hub's own). */
export function hubBrokerOptions(broker: Config['broker']): IClientOptions {
  const options: IClientOptions = {};
  if (broker.auth.username) options.username = broker.auth.username;
  if (broker.auth.password) options.password = broker.auth.password.reveal();
  if (broker.url.startsWith('mqtts:')) {
    options.rejectUnauthorized = true;
    const { caFile, certFile, keyFile, serverName } = broker.tls;
    if (caFile) options.ca = pem(caFile, 'broker.tls.caFile');
    if (certFile) options.cert = pem(certFile, 'broker.tls.certFile');
    if (keyFile) options.key = pem(keyFile, 'broker.tls.keyFile');
    if (serverName) options.servername = serverName;
  }
  return options;
}

function pem(file: string, key: string): Buffer {
  try {
    if (statSync(file).size > MAX_PEM_BYTES) throw new Error(`larger than ${MAX_PEM_BYTES} bytes`);
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError([{ path: key, source: file, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
}
