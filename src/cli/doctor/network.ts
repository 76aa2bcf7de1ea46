import { isPlaintextBrokerUrl } from '../../protocol/broker-url.js';
import { type Check, type CheckResult, type DoctorContext, fail, inRoot, pass, warn } from './check.js';

/** The broker: reachable, and for mqtts:// a TLS handshake that verifies with the configured CA and client cert. */
export const checkBroker: Check = async (context) => {
  const broker = context.config?.broker;
  if (!broker) return [fail('broker', 'no broker configured (the configuration did not load)', 'fix the configuration first: fleetlet config check')];
  const url = new URL(broker.url);
  const port = Number(url.port) || (url.protocol === 'mqtts:' ? 8883 : 1883);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isPlaintextBrokerUrl(broker.url)) {
    const result = await context.probe.tcp(host, port);
    if (!result.ok) return [fail('broker', `cannot reach ${host}:${port}: ${result.error}`, reachFix(host, port))];
    return [warn('broker', `reached ${host}:${port} over plain mqtt:// (unencrypted)`, 'use an mqtts:// URL with broker.tls.caFile')];
  }
  const result = await context.probe.tls(host, port, {
    // The files the config names are where the device has them: inside the root doctor looks at.
    ca: broker.tls.caFile && inRoot(context, broker.tls.caFile),
    cert: broker.tls.certFile && inRoot(context, broker.tls.certFile),
    key: broker.tls.keyFile && inRoot(context, broker.tls.keyFile),
    serverName: broker.tls.serverName,
    verify: true,
  });
  if (result.ok) return [pass('broker', `TLS handshake with ${host}:${port} verified${broker.tls.certFile ? ' (client certificate sent)' : ''}`)];
  return [fail('broker', `TLS with ${host}:${port} failed: ${result.error}`, tlsFix(result.error, host, port))];
};

/** The k3s server: a TLS handshake to its URL (k3s verifies the server CA itself, with the token's hash). */
export const checkK3sServer: Check = async (context) => {
  const k3s = context.config?.k3s;
  if (!k3s) return [];
  if (!k3s.enabled) return [pass('k3s-server', 'k3s is disabled in the configuration')];
  if (!k3s.serverUrl) return [fail('k3s-server', 'k3s.serverUrl is not set: the agent has nothing to join', 'set k3s.serverUrl: https://<server>:6443')];
  const url = new URL(k3s.serverUrl);
  const port = Number(url.port) || 443;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const result = await context.probe.tls(host, port, { verify: false });
  if (!result.ok) return [fail('k3s-server', `no TLS handshake with ${host}:${port}: ${result.error}`, reachFix(host, port))];
  return [expiryResult(context, host, port, result.peerCertificate?.validTo)];
};

function expiryResult(context: DoctorContext, host: string, port: number, validTo: string | undefined): CheckResult {
  if (validTo && new Date(validTo).getTime() < context.now.getTime()) {
    return warn('k3s-server', `${host}:${port} answers, but its certificate expired on ${validTo}`, 'rotate the server certificates: k3s certificate rotate on the server');
  }
  return pass('k3s-server', `TLS handshake with ${host}:${port}`);
}

function reachFix(host: string, port: number): string {
  return `check that ${host} resolves and that TCP port ${port} is open from this device (firewall, NAT port forwarding, server running)`;
}

function tlsFix(error: string, host: string, port: number): string {
  if (/SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY/.test(error)) return 'set broker.tls.caFile to the CA that signed the broker certificate';
  if (/ALTNAME|Hostname/i.test(error)) return `the broker certificate does not name ${host}: set broker.tls.serverName to a name it has, or reissue it`;
  if (/EXPIRED/.test(error)) return 'the broker certificate has expired (or this clock is wrong): check the clock, then reissue it';
  if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|no answer/.test(error)) return reachFix(host, port);
  return 'check broker.tls (caFile, certFile, keyFile) against the broker listener settings';
}
