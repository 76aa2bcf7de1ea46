import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startEnrolServer } from '../fixtures/enrol-server.js';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { startCli } from '../helpers/cli.js';
import { startEnrolmentFleet, type EnrolmentFleet } from '../helpers/enrol-broker.js';
import { mosquittoAvailable } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The real agent process (the bundle) with nothing but a bootstrap token and the fleet CA: it enrols with the hub
 * stand-in, connects to the real mosquitto that requires a certificate, and reports what it queued meanwhile.
 */
const TOKEN = `bootstrap-${'a'.repeat(40)}`;
const DEVICE_ID = `enrol-agent-${process.pid}`;
const ROOT = 'fleetlet/v1';

describe.skipIf(!mosquittoAvailable())('the agent enrols at first boot', () => {
  let fleet: EnrolmentFleet;
  let dir: string;
  let cleanupDir: () => void;

  beforeAll(async () => {
    ({ dir, cleanup: cleanupDir } = tempDir('fleetlet-enrol-agent-'));
    fleet = await startEnrolmentFleet(dir);
  });

  afterAll(async () => {
    await fleet?.broker.close();
    cleanupDir?.();
  });

  it('waits for approval while reports queue, then connects with its own certificate and reports its expiry', async () => {
    const hub = await startEnrolServer(fleet.ca, { tokens: [TOKEN], lifetimeSeconds: 3600 });
    onTestFinished(() => hub.close());
    // Pending long enough for the agent to take samples before it can connect.
    hub.script.push({ status: 'pending', retryAfterSeconds: 4 }, { status: 'pending', retryAfterSeconds: 4 });
    const device = tempDir('device-', dir).dir;
    const tokenFile = join(device, 'bootstrap-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const config = writeAgentConfig(device, {
      device: { id: DEVICE_ID },
      broker: { url: fleet.url, tls: { caFile: fleet.caFile }, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
      enrolment: { hubUrl: hub.url, bootstrapTokenFile: tokenFile },
      telemetry: { intervalSeconds: 5, http: { enabled: false } },
    });
    const observer = await fleet.operator([`${ROOT}/devices/${DEVICE_ID}/#`]);
    onTestFinished(() => observer.close());
    const run = startCli(['agent', '--config', config]);
    onTestFinished(async () => {
      if (run.child.exitCode === null) {
        run.child.kill('SIGTERM');
        await run.exited;
      }
    });
    const explain = () => `the agent's output:\n${run.output().slice(-4000)}`;
    await waitFor(() => observer.messages.some((m) => m.topic.endsWith('/presence') && (m.json as { state?: string }).state === 'online'), () => `online presence; ${explain()}`, 45_000);
    expect(hub.requests).toHaveLength(3);
    const issuedAt = hub.requests[2]!.at;

    const certFile = join(device, 'state/enrolment/current/device.pem');
    const cert = new X509Certificate(readFileSync(certFile));
    expect(cert.subject).toBe(`CN=${DEVICE_ID}`);
    expect(statSync(join(device, 'state/enrolment/current/device.key')).mode & 0o777).toBe(0o600);
    const inventory = await observer.waitFor((m) => m.topic.endsWith('/inventory'), 'the inventory');
    expect((inventory.json as { clientCertificateNotAfter?: string }).clientCertificateNotAfter).toBe(new Date(cert.validTo).toISOString());
    // A sample taken while the device waited for its certificate was queued, not lost.
    const status = await observer.waitFor((m) => m.topic.endsWith('/status'), 'a status report', 30_000);
    expect(new Date((status.json as { sampledAt: string }).sampledAt).getTime()).toBeLessThan(issuedAt);

    const output = run.output();
    expect(output).toContain('enrolment waits for approval in the hub');
    expect(output).not.toContain(TOKEN);
    expect(output).not.toContain(hub.credentials.get(DEVICE_ID));
    expect(output).not.toContain(readFileSync(join(device, 'state/enrolment/current/device.key'), 'utf8').split('\n')[1]);
  });
});
