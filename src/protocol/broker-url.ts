/**
 * How a broker URL is reached, decided on the parsed scheme, not the text: `MQTTS://` is TLS and `MQTT://` is not.
 * The agent's config (broker.allowPlaintext), its MQTT client and the operator tools (--allow-plaintext) all ask
 * these, so they cannot disagree.
 */
export function isTlsBrokerUrl(url: string): boolean {
  return schemeOf(url) === 'mqtts:';
}

/** Plain MQTT over TCP: everything, the MQTT password included, crosses the network readable. */
export function isPlaintextBrokerUrl(url: string): boolean {
  return schemeOf(url) === 'mqtt:';
}

// URL.parse is newer than the armv7 runtime (Node 20.11); canParse is not.
function schemeOf(url: string): string | undefined {
  return URL.canParse(url) ? new URL(url).protocol : undefined;
}

/** Where MQTT.js connects for a broker URL, given to it as options rather than as the URL text. */
export interface BrokerEndpoint {
  protocol: 'mqtt' | 'mqtts';
  hostname: string;
  port: number;
  /** From a URL with user info; the client's own username and password options take precedence. */
  username?: string;
  password?: string;
}

/**
 * Parses a broker URL with the WHATWG parser. MQTT.js parses a URL string with Node's legacy `url.parse()`, which
 * Node 24 warns about at runtime (DEP0169) on every start of the single binary, so every client is handed these
 * options instead. Throws when the URL is not mqtt:// or mqtts:// with a host (config validation has said so first).
 */
export function brokerEndpoint(url: string): BrokerEndpoint {
  const scheme = schemeOf(url);
  if (scheme !== 'mqtt:' && scheme !== 'mqtts:') throw new TypeError(`expected an mqtt:// or mqtts:// URL, got ${JSON.stringify(url)}`);
  const parsed = new URL(url);
  // An IPv6 literal comes back as "[::1]"; a socket wants it bare.
  const hostname = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (hostname === '') throw new TypeError(`expected a host in the broker URL ${JSON.stringify(url)}`);
  const port = parsed.port === '' ? (scheme === 'mqtts:' ? 8883 : 1883) : Number(parsed.port);
  const endpoint: BrokerEndpoint = { protocol: scheme === 'mqtts:' ? 'mqtts' : 'mqtt', hostname, port };
  if (parsed.username !== '') endpoint.username = decodeURIComponent(parsed.username);
  if (parsed.password !== '') endpoint.password = decodeURIComponent(parsed.password);
  return endpoint;
}
