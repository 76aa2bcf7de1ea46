import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';
import { isPlaintextBrokerUrl, isTlsBrokerUrl } from '../../protocol/broker-url.js';
import { existsSync } from 'node:fs';
import { type Check, type CheckResult, type DoctorContext, fail, inRoot, pass, warn } from './check.js';
import { effectiveBrokerTls } from './client-certificate.js';

/**
 * The broker: reachable, for mqtts:// a TLS handshake that verifies with the configured CA, and then an MQTT CONNECT
 * it accepts with this device's client certificate or credentials: the handshake alone says nothing about whether
 * the broker takes the device.
 */
export const checkBroker: Check = async (context) => {
  if (!context.config) return [fail('broker', 'no broker configured (the configuration did not load)', 'fix the configuration first: fleetlet config check')];
  // With enrolment, the certificate the agent connects with is the enrolled one.
  const broker = { ...context.config.broker, tls: effectiveBrokerTls(context.config) };
  const enrolling = context.config.enrolment.hubUrl !== undefined;
  const url = new URL(broker.url);
  const port = Number(url.port) || (url.protocol === 'mqtts:' ? 8883 : 1883);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isPlaintextBrokerUrl(broker.url)) {
    const result = await context.probe.tcp(host, port);
    if (!result.ok) return [fail('broker', `cannot reach ${host}:${port}: ${result.error}`, reachFix(host, port))];
    const refused = await refusal(context, broker, `${host}:${port} (plain mqtt://)`);
    if (refused) return [refused];
    return [warn('broker', `${host}:${port} accepts this device over plain mqtt:// (unencrypted)${credentialsNote(broker)}`, 'use an mqtts:// URL with broker.tls.caFile')];
  }
  if (!context.image && broker.tls.certFile && !existsSync(inRoot(context, broker.tls.certFile))) {
    // No certificate yet: whatever the handshake says, a broker that requires one would refuse this device.
    return [fail('broker', `${host}:${port} not checked: no client certificate at ${broker.tls.certFile}${enrolling ? ' (not enrolled yet)' : ''}`, enrolling ? 'the agent enrols at its start (see the client-certificate check)' : ENROL_FIX)];
  }
  // An image has no device certificate yet (it enrols at first boot): only its trust in the broker is checked.
  if (context.image && broker.tls.certFile && !existsSync(inRoot(context, broker.tls.certFile))) broker.tls = { ...broker.tls, certFile: undefined, keyFile: undefined };
  const result = await context.probe.tls(host, port, {
    // The files the config names are where the device has them: inside the root doctor looks at.
    ca: broker.tls.caFile && inRoot(context, broker.tls.caFile),
    cert: broker.tls.certFile && inRoot(context, broker.tls.certFile),
    key: broker.tls.keyFile && inRoot(context, broker.tls.keyFile),
    serverName: broker.tls.serverName,
    verify: true,
  });
  if (!result.ok) return [fail('broker', `TLS with ${host}:${port} failed: ${result.error}`, tlsFix(result.error, host, port))];
  // An image carries no device identity yet (its certificate or credentials come at first boot): only the trust in
  // the broker is the image's to check.
  if (context.image) return [pass('broker', `${host}:${port}: TLS verified with the image's CA; whether the broker accepts the device is checked on the device`)];
  const refused = await refusal(context, broker, `${host}:${port} (TLS verified)`);
  if (refused) return [refused];
  return [pass('broker', `${host}:${port} accepts this device: TLS verified${credentialsNote(broker)}`)];
};

type BrokerConfig = NonNullable<DoctorContext['config']>['broker'];

function credentialsNote(broker: BrokerConfig): string {
  if (broker.tls.certFile && isTlsBrokerUrl(broker.url)) return ', client certificate accepted';
  return broker.auth.username ? ', credentials accepted' : '';
}

/** The broker's answer to an MQTT CONNECT with this device's certificate or credentials; undefined when accepted. */
async function refusal(context: DoctorContext, broker: BrokerConfig, where: string): Promise<CheckResult | undefined> {
  const options: IClientOptions = {
    clientId: `fleetlet-doctor-${randomBytes(4).toString('hex')}`,
    ...(broker.auth.username ? { username: broker.auth.username } : {}),
    ...(broker.auth.password ? { password: broker.auth.password.reveal() } : {}),
  };
  if (isTlsBrokerUrl(broker.url)) {
    const { caFile, certFile, keyFile, serverName } = broker.tls;
    Object.assign(options, {
      rejectUnauthorized: true,
      // On an image (--root) the files are the image's.
      ...(caFile ? { ca: readFileSync(inRoot(context, caFile)) } : {}),
      ...(certFile ? { cert: readFileSync(inRoot(context, certFile)) } : {}),
      ...(keyFile ? { key: readFileSync(inRoot(context, keyFile)) } : {}),
      ...(serverName ? { servername: serverName } : {}),
    });
  }
  const result = await context.probe.mqtt(broker.url, options);
  if (result.ok) return undefined;
  return fail('broker', `${where} refused this device: ${result.error}`, refusalFix(result.error, broker));
}

function refusalFix(error: string, broker: BrokerConfig): string {
  if (/username or password|Not authori[sz]ed/i.test(error)) {
    return broker.auth.username
      ? 'the broker does not accept broker.auth.username with this password: check broker.auth.passwordFile against the broker password file'
      : `the broker wants credentials or a client certificate it accepts: ${ENROL_FIX} (or broker.auth)`;
  }
  if (broker.tls.certFile) return 'the broker refused the client certificate: issue broker.tls.certFile from the CA the broker trusts for devices (its cafile), for this device id';
  return `the broker requires a client certificate: ${ENROL_FIX} (or broker.auth for a password listener)`;
}

const ENROL_FIX = 'enrol the device (enrolment.hubUrl and enrolment.bootstrapTokenFile; install.sh --enrol-token-file FILE --hub URL), or set broker.tls.certFile and broker.tls.keyFile';

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
