import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestCa, serverPair, type TestCa } from '../fixtures/enrol-server.js';
import { issueCert } from './certs.js';
import { startMosquitto, type TestBroker } from './mosquitto.js';
import { Observer } from './observer.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from './shipped-broker.js';

/**
 * The fleet's side for enrolment tests: a CA made at test time (the one the hub stand-in signs with) and the real
 * mosquitto with the shipped config (mutual TLS, CN = device id, the per-device ACL) trusting only that CA.
 */
export interface EnrolmentFleet {
  ca: TestCa;
  /** The CA certificate, as a device gets it. */
  caFile: string;
  broker: TestBroker;
  url: string;
  /** An operator client of the same CA, recording what it sees on `topics`. */
  operator(topics: string[]): Promise<Observer>;
}

export async function startEnrolmentFleet(dir: string): Promise<EnrolmentFleet> {
  const ca = createTestCa(dir);
  const pair = serverPair(ca, 'broker');
  const caFile = join(dir, 'ca.crt');
  writeFileSync(caFile, ca.pem);
  copyFileSync(pair.cert, join(dir, 'broker.crt'));
  copyFileSync(pair.key, join(dir, 'broker.key'));
  copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(dir, 'acl'));
  // mosquitto started as root reads these after dropping to its own user.
  chmodSync(dir, 0o755);
  for (const name of ['ca.crt', 'broker.crt', 'broker.key', 'acl']) chmodSync(join(dir, name), 0o644);
  const broker = await startMosquitto(shippedMosquittoConfig(dir));
  const url = `mqtts://127.0.0.1:${broker.port}`;
  return {
    ca,
    caFile,
    broker,
    url,
    operator: (topics) => {
      const op = issueCert(ca, ca.dir, 'fleet-operator');
      return Observer.connect(url, topics, { ca: ca.pem, cert: readFileSync(op.cert), key: readFileSync(op.key), clientId: 'fleet-operator' });
    },
  };
}
