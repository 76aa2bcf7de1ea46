import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { EnrolmentSection } from '../../src/config/enrolment-schema.js';
import { ProgressMonitor } from '../../src/daemon/progress-monitor.js';
import type { Heartbeat } from '../../src/lib/heartbeat.js';
import { EnrolmentPart, type EnrolmentEvent } from '../../src/identity/enrolment-part.js';
import { ENROL_PATH, RENEW_PATH } from '../../src/protocol/enrolment.js';
import { createTestCa, startEnrolServer, type EnrolServer, type TestCa } from '../fixtures/enrol-server.js';
import { startEnrolmentFleet, type EnrolmentFleet } from '../helpers/enrol-broker.js';
import { announced, brokerConfig, capturingLogger, makeLink } from '../helpers/link.js';
import { mosquittoAvailable, type TestBroker } from '../helpers/mosquitto.js';
import type { Observer } from '../helpers/observer.js';
import { tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The device side of zero-touch enrolment: the enrolment part and the real link against a stand-in hub that issues
 * real certificates (test/fixtures/enrol-server.ts) and the real mosquitto with the shipped config (mutual TLS,
 * the CN is the device's name, the per-device ACL) trusting only the test CA.
 */
const TOKEN = `bootstrap-${'t'.repeat(40)}`;
const ROOT = 'fleetlet/v1';

describe.skipIf(!mosquittoAvailable())('enrolment with a hub and a broker that requires a certificate', () => {
  let ca: TestCa;
  let caFile: string;
  let broker: TestBroker;
  let url: string;
  let dir: string;
  let cleanupDir: () => void;
  let fleet: EnrolmentFleet;

  beforeAll(async () => {
    ({ dir, cleanup: cleanupDir } = tempDir('fleetlet-enrol-'));
    fleet = await startEnrolmentFleet(dir);
    ({ ca, caFile, broker, url } = fleet);
  });

  afterAll(async () => {
    await broker?.close();
    cleanupDir?.();
  });

  async function hub(lifetimeSeconds = 3600): Promise<EnrolServer> {
    const server = await startEnrolServer(ca, { tokens: [TOKEN], lifetimeSeconds });
    onTestFinished(() => server.close());
    return server;
  }

  /** One device: its own state directory, the bootstrap token (0600) and the fleet CA, nothing else. */
  function device(server: EnrolServer, id: string, options: { renewAt?: number; caFile?: string; stateDir?: string; progress?: Heartbeat } = {}) {
    const stateDir = options.stateDir ?? tempDir(`fleetlet-${id}-`, dir).dir;
    const tokenFile = join(stateDir, 'bootstrap-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const config = EnrolmentSection.parse({
      hubUrl: server.url,
      bootstrapTokenFile: tokenFile,
      caFile: options.caFile ?? caFile,
      renewAt: options.renewAt ?? 2 / 3,
      refusedRetrySeconds: 10,
    });
    const events: EnrolmentEvent[] = [];
    const { logger, lines } = capturingLogger();
    const part = new EnrolmentPart(config, { stateDir, deviceId: id, sink: { emit: (e) => events.push(e) }, logger });
    const made = makeLink(brokerConfig(url, { tls: { caFile } }), { deviceId: id, groups: [], credentials: part, ...(options.progress ? { progress: options.progress } : {}) });
    part.start();
    made.link.start();
    onTestFinished(async () => {
      await made.link.stop();
      await part.stop();
    });
    const enrolDir = join(stateDir, 'enrolment');
    return {
      part,
      made,
      events,
      stateDir,
      enrolDir,
      logs: () => [...lines(), ...made.logs()],
      currentGeneration: () => (existsSync(join(enrolDir, 'current')) ? readlinkSync(join(enrolDir, 'current')) : undefined),
      stop: async () => {
        await made.link.stop();
        await part.stop();
      },
    };
  }

  async function operator(topics: string[]): Promise<Observer> {
    const observer = await fleet.operator(topics);
    onTestFinished(() => observer.close());
    return observer;
  }

  const certOf = (d: { part: EnrolmentPart }) => new X509Certificate(d.part.current()!.cert);

  it('first boot: makes its key (0600), enrols with the bootstrap token and connects with its own certificate; a second device gets another', async () => {
    const server = await hub();
    const fleet = await operator([`${ROOT}/devices/+/presence`]);
    const a = device(server, 'enrol-a');
    const b = device(server, 'enrol-b');
    await announced(a.made);
    await announced(b.made);
    await fleet.waitFor((m) => m.topic === `${ROOT}/devices/enrol-a/presence` && (m.json as { state?: string }).state === 'online', 'enrol-a online');
    expect(server.requests.map((r) => [r.path, r.authorization])).toEqual([
      [ENROL_PATH, `Bearer ${TOKEN}`],
      [ENROL_PATH, `Bearer ${TOKEN}`],
    ]);
    expect(certOf(a).subject).toBe('CN=enrol-a');
    expect(certOf(b).subject).toBe('CN=enrol-b');
    expect(certOf(a).serialNumber).not.toBe(certOf(b).serialNumber);
    expect(server.requests[0]!.csrPublicKey).not.toBe(server.requests[1]!.csrPublicKey);
    const generation = join(a.enrolDir, a.currentGeneration()!);
    expect(statSync(join(generation, 'device.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(a.enrolDir, 'renewal-credential')).mode & 0o777).toBe(0o600);
    expect(statSync(a.enrolDir).mode & 0o777).toBe(0o700);
    // The private key is only in its file: not in the hub's requests, not in the logs, and neither are the secrets.
    const privateKey = readFileSync(join(generation, 'device.key'), 'utf8');
    expect(JSON.stringify(server.requests)).not.toContain(privateKey.split('\n')[1]);
    const logs = a.logs().join('\n');
    expect(logs).not.toContain(TOKEN);
    expect(logs).not.toContain(server.credentials.get('enrol-a'));
    expect(logs).not.toContain(privateKey.split('\n')[1]);
  });

  it('waits while the hub says pending (idle for the watchdog), asking again with the same key, then connects once issued', async () => {
    const server = await hub();
    server.script.push({ status: 'pending', retryAfterSeconds: 1 }, { status: 'pending', retryAfterSeconds: 1 });
    const monitor = new ProgressMonitor();
    const d = device(server, 'enrol-pending', { progress: monitor.register('mqtt-link', 200) });
    await waitFor(() => d.made.logs().some((l) => l.includes('waiting for a client certificate from enrolment')), 'the link to wait');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(monitor.stuck()).toEqual([]);
    await announced(d.made);
    expect(server.requests).toHaveLength(3);
    expect(new Set(server.requests.map((r) => r.csrPublicKey)).size).toBe(1);
    expect(d.logs().some((l) => l.includes('enrolment waits for approval in the hub'))).toBe(true);
  });

  it('a refusal is logged and raised as an event with the reason; it asks again later and connects once the hub agrees', async () => {
    const server = await hub();
    server.script.push({ status: 'refused', reason: 'token expired' });
    const d = device(server, 'enrol-refused');
    await waitFor(() => d.events.length > 0, 'the refusal event');
    expect(d.events[0]).toMatchObject({ kind: 'enrolment.refused', reason: 'token expired' });
    expect(d.logs().some((l) => l.includes('the hub refused enrolment') && l.includes('token expired'))).toBe(true);
    expect(d.made.link.state().connected).toBe(false);
    expect(d.part.current()).toBeUndefined();
    // enrolment.refusedRetrySeconds is 10 here.
    await announced(d.made, 1, 30_000);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.at - server.requests[0]!.at).toBeGreaterThanOrEqual(9_000);
  });

  it('renews at renewAt with a new key and the renewal credential, then reconnects with the new certificate', async () => {
    const server = await hub(30);
    const d = device(server, 'enrol-renew', { renewAt: 0.2 });
    await announced(d.made);
    const first = d.currentGeneration();
    const credential = server.credentials.get('enrol-renew');
    await announced(d.made, 2, 30_000);
    await waitFor(() => d.currentGeneration() !== first, 'the current generation to switch');
    expect(server.requests.map((r) => r.path)).toEqual([ENROL_PATH, RENEW_PATH]);
    expect(server.requests[1]!.authorization).toBe(`Bearer ${credential}`);
    expect(server.requests[1]!.csrPublicKey).not.toBe(server.requests[0]!.csrPublicKey);
    // The old generation is gone once the new one has connected.
    await waitFor(() => !existsSync(join(d.enrolDir, first!)), 'the old generation to be removed');
    expect(d.part.notAfter()!.getTime()).toBe(new Date(certOf(d).validTo).getTime());
  });

  it.each(['wrong-key', 'wrong-cn', 'wrong-ca'] as const)('refuses a renewed certificate with %s and keeps the one it has', async (tamper) => {
    const server = await hub(30);
    server.script.push({ status: 'issued' }, { status: 'issued', tamper });
    const d = device(server, `enrol-${tamper}`, { renewAt: 0.1 });
    await announced(d.made);
    const first = d.currentGeneration();
    const firstId = d.part.current()!.id;
    await waitFor(() => d.events.some((e) => e.kind === 'enrolment.certificate-refused'), 'the refused certificate event', 30_000);
    expect(d.currentGeneration()).toBe(first);
    expect(d.part.current()!.id).toBe(firstId);
    expect(d.made.link.state().connected).toBe(true);
    expect(d.logs().filter((l) => l.includes('online: subscribed to commands and announced'))).toHaveLength(1);
  });

  it('renews an expired certificate with the renewal credential after being offline', async () => {
    const server = await hub(4);
    const stateDir = tempDir('fleetlet-offline-', dir).dir;
    const before = device(server, 'enrol-offline', { renewAt: 0.95, stateDir });
    await announced(before.made);
    await before.stop();
    const credential = server.credentials.get('enrol-offline');
    // Offline past the certificate's expiry.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    server.tokens.clear();
    server.lifetimeSeconds = 3600;
    const after = device(server, 'enrol-offline', { stateDir });
    await announced(after.made);
    expect(server.requests.at(-1)).toMatchObject({ path: RENEW_PATH, authorization: `Bearer ${credential}` });
    expect(new Date(certOf(after).validTo).getTime()).toBeGreaterThan(Date.now() + 3000_000);
  });

  it('goes back to the previous certificate when the broker refuses the renewed one', async () => {
    const server = await hub(30);
    const otherCa = createTestCa(dir, 'second-fleet-ca');
    // The device trusts both CAs; the broker only the first, so only the broker can tell.
    const bundle = join(dir, 'two-cas.crt');
    writeFileSync(bundle, `${ca.pem}${otherCa.pem}`);
    server.script.push({ status: 'issued' }, { status: 'issued', signWith: otherCa });
    const d = device(server, 'enrol-rollback', { renewAt: 0.1, caFile: bundle });
    await announced(d.made);
    const first = d.currentGeneration();
    await waitFor(() => d.logs().some((l) => l.includes('the broker refused the renewed certificate')), 'the rollback', 30_000);
    await announced(d.made, 2, 30_000);
    expect(d.currentGeneration()).toBe(first);
    expect(certOf(d).issuer).toBe(`CN=${ca.name}`);
  });
});
