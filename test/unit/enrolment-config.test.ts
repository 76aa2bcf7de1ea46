import { describe, expect, it } from 'vitest';
import { EnrolmentSection, withEnrolledTls } from '../../src/config/enrolment-schema.js';
import { ConfigSchema } from '../../src/config/schema.js';

describe('the enrolment config section', () => {
  it('takes https only; plain http only on loopback and only when allowed by name', () => {
    expect(EnrolmentSection.safeParse({ hubUrl: 'https://hub.example.net' }).success).toBe(true);
    expect(EnrolmentSection.safeParse({ hubUrl: 'http://127.0.0.1:8080' }).success).toBe(false);
    expect(EnrolmentSection.safeParse({ hubUrl: 'http://127.0.0.1:8080', allowInsecureLoopback: true }).success).toBe(true);
    expect(EnrolmentSection.safeParse({ hubUrl: 'http://hub.example.net', allowInsecureLoopback: true }).success).toBe(false);
    expect(EnrolmentSection.safeParse({ hubUrl: 'ftp://hub.example.net' }).success).toBe(false);
  });

  it('renews at 2/3 of the lifetime unless told otherwise', () => {
    expect(EnrolmentSection.parse({}).renewAt).toBeCloseTo(2 / 3);
    expect(EnrolmentSection.safeParse({ renewAt: 1 }).success).toBe(false);
  });

  it('points the broker client certificate and key at the enrolled files, and the CA at enrolment.caFile', () => {
    const config = ConfigSchema.parse({
      broker: { url: 'mqtts://broker.example.net:8883' },
      stateDir: '/var/lib/fleetlet',
      enrolment: { hubUrl: 'https://hub.example.net', caFile: '/etc/fleetlet/trust/fleet-ca.crt' },
    });
    expect(withEnrolledTls(config.broker, config.stateDir, config.enrolment).tls).toMatchObject({
      caFile: '/etc/fleetlet/trust/fleet-ca.crt',
      certFile: '/var/lib/fleetlet/enrolment/current/device.pem',
      keyFile: '/var/lib/fleetlet/enrolment/current/device.key',
    });
    const without = ConfigSchema.parse({ broker: { url: 'mqtts://broker.example.net:8883' } });
    expect(withEnrolledTls(without.broker, without.stateDir, without.enrolment).tls.certFile).toBeUndefined();
  });
});
