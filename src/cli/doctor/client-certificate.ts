import { createPublicKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { withEnrolledTls } from '../../config/enrolment-schema.js';
import type { Config } from '../../config/schema.js';
import { inspectCertificate, type CertificateProblemKind } from '../../identity/certificate-check.js';
import { DeviceRecordFile } from '../../identity/device-record.js';
import { errorMessage } from '../../lib/errors.js';
import { isTlsBrokerUrl } from '../../protocol/broker-url.js';
import { type Check, type CheckResult, type DoctorContext, fail, inRoot, pass, skip, warn } from './check.js';

const CHECK = 'client-certificate';

/** The broker TLS files the agent uses: with enrolment, the enrolled ones unless broker.tls names others. */
export function effectiveBrokerTls(config: Config): Config['broker']['tls'] {
  return withEnrolledTls(config.broker, config.stateDir, config.enrolment).tls;
}

const ENROL_FIX = 'enrol the device: set enrolment.hubUrl and enrolment.bootstrapTokenFile (install.sh --enrol-token-file FILE --hub URL), or set broker.tls.certFile/keyFile to a certificate issued for this device id';

const FIXES: Record<CertificateProblemKind, string> = {
  chain: 'the certificate must be issued by the fleet CA the broker trusts (broker.tls.caFile / enrolment.caFile); enrol again or reissue it',
  key: 'broker.tls.keyFile must be the key the certificate was issued for; enrol again or reissue the pair',
  name: 'the broker takes the common name as the device id: issue the certificate for this device id (enrolment does)',
  expired: 'renew it: with enrolment the agent renews with its renewal credential at start; otherwise reissue broker.tls.certFile',
  'not-yet-valid': 'check the clock (timedatectl), then restart fleetlet',
};

/**
 * The client certificate the device connects with: present, its key matches, not expired (nor soon), its common name
 * is the device id, and it chains to the fleet CA. On an image there must be none (each device enrols for its own).
 */
export const checkClientCertificate: Check = (context) => {
  const config = context.config;
  // Nothing to say without a TLS broker or a certificate: the broker check says whether the broker wants one.
  if (!config || !isTlsBrokerUrl(config.broker.url)) return [];
  const enrolling = config.enrolment.hubUrl !== undefined;
  const tls = effectiveBrokerTls(config);
  const certFile = tls.certFile && inRoot(context, tls.certFile);
  const present = certFile !== undefined && existsSync(certFile);
  if (context.image) return imageResults(context, config, present);
  if (!tls.certFile) return [];
  if (!present) {
    return enrolling
      ? [fail(CHECK, `not enrolled yet: no certificate at ${tls.certFile}`, 'the agent enrols at its start: run it (systemctl start fleetlet) and read its log for the hub\'s answer (pending approval, refused)')]
      : [fail(CHECK, `broker.tls.certFile ${tls.certFile} does not exist`, ENROL_FIX)];
  }
  return certificateResults(context, config, tls, certFile);
};

function certificateResults(context: DoctorContext, config: Config, tls: Config['broker']['tls'], certFile: string): CheckResult[] {
  const caFile = tls.caFile ?? config.enrolment.caFile;
  const deviceId = config.device.id ?? new DeviceRecordFile(inRoot(context, config.stateDir)).load().record?.deviceId;
  if (!tls.keyFile || !caFile || !deviceId) {
    const missing = !tls.keyFile ? 'broker.tls.keyFile' : !caFile ? 'broker.tls.caFile' : 'the device id (device.id, or the agent\'s first start)';
    return [fail(CHECK, `cannot check the client certificate without ${missing}`, `set ${missing === 'broker.tls.keyFile' ? 'broker.tls.keyFile' : missing === 'broker.tls.caFile' ? 'broker.tls.caFile' : 'device.id, or start the agent once'}`)];
  }
  let inspected;
  try {
    inspected = inspectCertificate(readFileSync(certFile, 'utf8'), {
      caPem: readFileSync(inRoot(context, caFile), 'utf8'),
      publicKey: createPublicKey(readFileSync(inRoot(context, tls.keyFile))).export({ type: 'spki', format: 'der' }),
      deviceId,
      now: context.now,
    });
  } catch (err) {
    return [fail(CHECK, `cannot read the client certificate, its key or the CA: ${errorMessage(err)}`, ENROL_FIX)];
  }
  const { facts, problems } = inspected;
  if (problems.length > 0) return problems.map((p) => fail(CHECK, `${tls.certFile}: ${p.message}`, FIXES[p.kind]));
  // Past its renewal point (enrolment.renewAt of the lifetime; 2/3 by default) it should have been renewed already.
  const lifetime = facts.notAfter.getTime() - facts.notBefore.getTime();
  const left = facts.notAfter.getTime() - context.now.getTime();
  const renewal = config.enrolment.hubUrl ? 'the agent renews it before then; if it does not, its log says why' : 'reissue broker.tls.certFile before then (or enrol: enrolment.hubUrl renews it by itself)';
  if (left < lifetime * (1 - config.enrolment.renewAt)) return [warn(CHECK, `issued to ${deviceId}, expires soon: ${facts.notAfter.toISOString()}`, renewal)];
  return [pass(CHECK, `issued to ${deviceId} by the fleet CA, key matches, valid until ${facts.notAfter.toISOString()}`)];
}

/** An image carries the bootstrap credential and the trust anchors, never a device certificate. */
function imageResults(context: DoctorContext, config: Config, present: boolean): CheckResult[] {
  const { hubUrl, bootstrapTokenFile } = config.enrolment;
  if (present && hubUrl) {
    return [fail(CHECK, 'the image holds an enrolled device certificate: every device flashed from it would share it', 'remove <enrolment.dir> from the image; each device enrols for its own at first boot')];
  }
  if (!hubUrl) return [skip(CHECK, 'no enrolment configured: the certificate is the device\'s to bring')];
  if (!bootstrapTokenFile || !existsSync(inRoot(context, bootstrapTokenFile))) {
    return [fail(CHECK, 'enrolment is configured but the image holds no bootstrap token', 'provision --root DIR --enrol-token-file FILE --hub URL --ca-file FILE')];
  }
  return [pass(CHECK, `devices flashed from this image enrol at first boot with ${new URL(hubUrl).origin}`)];
}
