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
