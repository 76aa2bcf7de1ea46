import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeAgentConfig } from '../helpers/agent-config.js';
import { runCli, startCli } from '../helpers/cli.js';
import { csrPem, hubRequest, newDeviceKey } from '../helpers/enrolment.js';
import {
  bundleCommand,
  imageDeviceSettings,
  queryHub,
  startEnrolmentHubFleet,
  startFleetlet,
  statusSamplesReceived,
  type EnrolmentHubFleet,
  type FleetletProcess,
} from '../helpers/enrolment-hub-fleet.js';
import { mosquittoAvailable } from '../helpers/mosquitto.js';
import { tempDir } from '../helpers/paths.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Zero-touch enrolment with every part real: `fleetlet hub` (the fleet CA `hub ca init` made, enrolment over HTTPS,
 * ingest from the broker), the shipped mosquitto (device listener: a certificate of the fleet CA, CN = username =
 * client id, the hub's CRL, the shipped ACL) and agent processes that start with nothing but a bootstrap token
 * file, the fleet CA and the hub's URL. Certificates live about 22 s (hub.enrolment.certificateDays), so renewal
 * and expiry happen within the test.
 */
const LIFETIME_DAYS = 0.00025;
const LIFETIME_MS = LIFETIME_DAYS * 86_400_000;

interface Agent {
  dir: string;
  tokenFile: string;
  output(): string;
  running(): boolean;
  stop(): Promise<void>;
  start(): void;
}

describe.skipIf(!mosquittoAvailable())('zero-touch enrolment end to end: real hub, real mosquitto, real agents', { timeout: 90_000 }, () => {
  const temp = tempDir('fleetlet-enrol-e2e-');
  const dir = temp.dir;
  const agents: Agent[] = [];
  let fleet: EnrolmentHubFleet;

  beforeAll(async () => {
    fleet = await startEnrolmentHubFleet(dir, { command: bundleCommand, certificateDays: LIFETIME_DAYS });
  }, 90_000);

  afterAll(async () => {
    for (const agent of agents) await agent.stop();
    await fleet?.close();
    temp.cleanup();
  });

  /**
   * A device flashed from one image: the same config and bootstrap token (a copy of the image's file), its own
   * machine id (so its own device id) and state. No device id, no client certificate, no key is given.
   */
  function startDevice(name: string, token: string): Agent {
    const deviceDir = join(dir, name);
    mkdirSync(join(deviceDir, 'root/etc'), { recursive: true });
    writeFileSync(join(deviceDir, 'root/etc/machine-id'), `${randomBytes(16).toString('hex')}\n`);
    const tokenFile = join(deviceDir, 'bootstrap-token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const config = writeAgentConfig(deviceDir, imageDeviceSettings(fleet, join(deviceDir, 'root'), tokenFile));
    let run: FleetletProcess | undefined;
    let earlier = '';
    const agent: Agent = {
      dir: deviceDir,
      tokenFile,
      output: () => earlier + (run?.output() ?? ''),
      running: () => run?.running() ?? false,
      start: () => {
        earlier = agent.output();
        run = startFleetlet(bundleCommand, ['agent', '--config', config]);
      },
      stop: async () => {
        await run?.stop();
      },
    };
    agent.start();
    agents.push(agent);
    return agent;
  }

  const certFile = (agent: Agent) => join(agent.dir, 'state/enrolment/current/device.pem');
  const keyFile = (agent: Agent) => join(agent.dir, 'state/enrolment/current/device.key');
  function certificate(agent: Agent): X509Certificate | undefined {
    try {
      return new X509Certificate(readFileSync(certFile(agent)));
    } catch {
      return undefined;
    }
  }
  const commonName = (cert: X509Certificate) => cert.subject.replace(/^CN=/, '');

  const hubQuery = <T>(sql: string, ...params: unknown[]) => queryHub<T>(fleet, sql, ...params);
  const samplesReceivedAfter = (deviceId: string, at: number) => statusSamplesReceived(fleet, deviceId, at);

  /** Waits until the device holds a certificate and a status sample sent with it reached the hub's database. */
  async function reportsToHub(agent: Agent, after = 0, timeoutMs = 45_000): Promise<X509Certificate> {
    const explain = () => `the agent's output:\n${agent.output().slice(-4000)}\nthe hub's:\n${fleet.hub.output().slice(-2000)}`;
    await waitFor(() => {
      if (!agent.running()) throw new Error(`the agent exited; ${explain()}`);
      return certificate(agent) !== undefined;
    }, () => `a certificate; ${explain()}`, timeoutMs);
    await waitFor(() => samplesReceivedAfter(commonName(certificate(agent)!), after) > 0, () => `a status sample in the hub; ${explain()}`, timeoutMs);
    return certificate(agent)!;
  }

  /** One connection to the device listener; resolves with why the broker refused it, or 'accepted'. */
  async function deviceListener(options: mqtt.IClientOptions): Promise<string> {
    try {
      const client = await mqtt.connectAsync(fleet.deviceUrl, { ca: fleet.fleetCaPem, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...options });
      await client.endAsync();
      return 'accepted';
    } catch (err) {
      return (err as Error).message;
    }
  }

  let first: { agent: Agent; deviceId: string; cert: X509Certificate };
  let second: string;

  it('enrols a device that has only a bootstrap token, the fleet CA and the hub URL; it connects with its own certificate and reports to the hub', async () => {
    const token = fleet.createToken('image-batch', 2, '--auto-approve');
    const agent = startDevice('device-a', token);
    const cert = await reportsToHub(agent);
    const deviceId = commonName(cert);
    expect(cert.checkIssued(new X509Certificate(fleet.fleetCaPem))).toBe(true);
    expect(cert.verify(new X509Certificate(fleet.fleetCaPem).publicKey)).toBe(true);
    // Its own key, made on the device, is the one in the certificate.
    expect(cert.checkPrivateKey(createPrivateKey(readFileSync(keyFile(agent))))).toBe(true);
    const [device] = hubQuery<{ presence_state: string; inventory_json: string }>('SELECT presence_state, inventory_json FROM devices WHERE device_id = ?', deviceId);
    expect(device?.presence_state).toBe('online');
    // The device reports when its certificate ends, in the inventory the hub keeps.
    expect((JSON.parse(device!.inventory_json) as { clientCertificateNotAfter?: string }).clientCertificateNotAfter).toBe(new Date(cert.validTo).toISOString());
    expect(hubQuery<{ state: string }>('SELECT state FROM enrolled_devices WHERE device_id = ?', deviceId)).toEqual([{ state: 'active' }]);
    expect(agent.output()).not.toContain(token);
    first = { agent, deviceId, cert };
  });

  it('gives a second device from the same image (the same token file) its own device id and certificate', async () => {
    const token = readFileSync(first.agent.tokenFile, 'utf8').trim();
    const agent = startDevice('device-b', token);
    const cert = await reportsToHub(agent);
    expect(commonName(cert)).not.toBe(first.deviceId);
    expect(cert.serialNumber).not.toBe(first.cert.serialNumber);
    second = commonName(cert);
    expect(cert.publicKey.export({ format: 'der', type: 'spki' })).not.toEqual(first.cert.publicKey.export({ format: 'der', type: 'spki' }));
    const uses = runCli(['hub', 'enrol-token', 'list', '--config', fleet.hubConfig]);
    expect(uses.stdout).toMatch(/image-batch\t2\/2 used\tused up/);
    await agent.stop();
  });

  it('keeps a device of a manual token pending until `fleetlet hub enrolment approve`, then it connects', async () => {
    const agent = startDevice('device-pending', fleet.createToken('manual-batch', 1, '--manual'));
    await waitFor(() => agent.output().includes('enrolment waits for approval in the hub'), () => `a pending answer: ${agent.output()}`, 30_000);
    expect(certificate(agent)).toBeUndefined();
    const list = runCli(['hub', 'enrolment', 'list', '--config', fleet.hubConfig, '--status', 'pending', '--json']);
    const [pending] = JSON.parse(list.stdout) as { id: number; deviceId: string }[];
    expect(pending).toBeDefined();
    const approved = runCli(['hub', 'enrolment', 'approve', String(pending!.id), '--config', fleet.hubConfig]);
    expect(approved.stdout).toContain(`${pending!.deviceId}: approved`);
    const cert = await reportsToHub(agent);
    expect(commonName(cert)).toBe(pending!.deviceId);
    await agent.stop();
  });

  it('renews before expiry with a new key, switches once the new certificate connected, and keeps reporting', async () => {
    const { agent, deviceId } = first;
    const before = certificate(agent)!;
    let seenAt = 0;
    await waitFor(
      () => {
        const now = certificate(agent);
        if (now && now.serialNumber !== before.serialNumber) seenAt = Date.now();
        return seenAt > 0;
      },
      () => `a renewed certificate: ${agent.output().slice(-3000)}`,
      LIFETIME_MS + 15_000,
    );
    // Switched while the old one still had time left: renewed at two thirds, not after it expired.
    expect(seenAt).toBeLessThan(new Date(before.validTo).getTime());
    const renewed = certificate(agent)!;
    expect(commonName(renewed)).toBe(deviceId);
    expect(renewed.publicKey.export({ format: 'der', type: 'spki' })).not.toEqual(before.publicKey.export({ format: 'der', type: 'spki' }));
    expect(new Date(renewed.validTo).getTime()).toBeGreaterThan(new Date(before.validTo).getTime());
    // `current` moves to a generation only after it connected: reports keep reaching the hub with it.
    await reportsToHub(agent, seenAt);
    expect(agent.output()).toContain('the renewed certificate connected');
    const [enrolled] = hubQuery<{ current_serial: string; renewed_at_ms: number | null }>('SELECT current_serial, renewed_at_ms FROM enrolled_devices WHERE device_id = ?', deviceId);
    expect(enrolled?.renewed_at_ms).not.toBeNull();
    // At two thirds of each lifetime, not over and over: one certificate per ~14 s since the first was issued.
    const [issued] = hubQuery<{ n: number; firstAt: number }>('SELECT count(*) AS n, min(issued_at_ms) AS firstAt FROM device_certificates WHERE device_id = ?', deviceId);
    expect(issued!.n).toBeLessThanOrEqual(1 + Math.ceil((Date.now() - issued!.firstAt) / (LIFETIME_MS / 2)));
  });

  it('re-enrols a device that was offline past its certificate expiry with its renewal credential (its bootstrap token revoked)', async () => {
    const { agent, deviceId } = first;
    await agent.stop();
    const stale = certificate(agent)!;
    // With its bootstrap token revoked, only the renewal credential issued with the certificate can bring it back.
    const revoked = runCli(['hub', 'enrol-token', 'revoke', 'image-batch', '--config', fleet.hubConfig]);
    expect(revoked.stdout).toContain('revoked 1');
    await waitFor(() => Date.now() > new Date(stale.validTo).getTime() + 1000, 'the certificate to expire', LIFETIME_MS + 5000);
    const refusal = await deviceListener({ cert: readFileSync(certFile(agent)), key: readFileSync(keyFile(agent)) });
    expect(refusal).toMatch(/alert certificate expired/);
    const restartedAt = Date.now();
    agent.start();
    const renewed = await reportsToHub(agent, restartedAt);
    expect(commonName(renewed)).toBe(deviceId);
    expect(renewed.serialNumber).not.toBe(stale.serialNumber);
    expect(agent.output()).not.toContain('enrolling with the bootstrap token');
  });

  it('refuses a revoked device at the broker once it reread the CRL, and ends its open connection', async () => {
    const { agent, deviceId } = first;
    // Revoked while the certificate is fresh, so the refusal below is the CRL's and not the expiry's.
    const before = certificate(agent)!.serialNumber;
    await waitFor(() => certificate(agent)!.serialNumber !== before, 'a fresh certificate', LIFETIME_MS + 15_000);
    await reportsToHub(agent, Date.now());
    const crlBefore = readFileSync(fleet.crlPath, 'utf8');
    const revoke = startCli(['hub', 'device', 'revoke', deviceId, '--config', fleet.hubConfig]);
    // What fleetlet-crl-reload.path does on the server: reload mosquitto when the hub rewrote the CRL.
    await waitFor(() => readFileSync(fleet.crlPath, 'utf8') !== crlBefore, () => `the CRL to change: ${revoke.output()}`, 20_000);
    fleet.broker.reload!();
    expect(await revoke.exited, revoke.output()).toBe(0);
    expect(revoke.output()).toContain('kubectl delete node');
    expect(revoke.output()).toContain(`ended ${deviceId}'s broker connection`);
    const endedAt = Date.now();
    expect(await deviceListener({ cert: readFileSync(certFile(agent)), key: readFileSync(keyFile(agent)) })).toMatch(/alert certificate revoked/);
    // The agent's connection was ended and it cannot come back: nothing more of it reaches the hub.
    await waitFor(() => /alert certificate revoked/.test(agent.output()), () => `the agent to be refused: ${agent.output().slice(-3000)}`, 20_000);
    // Over a telemetry interval (5 s) after the end (and a margin for what was in flight then), not one sample arrives.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, endedAt + 8000 - Date.now())));
    expect(samplesReceivedAfter(deviceId, endedAt + 2000)).toBe(0);
    expect(hubQuery<{ state: string }>('SELECT state FROM enrolled_devices WHERE device_id = ?', deviceId)).toEqual([{ state: 'revoked' }]);
  });

  it('gives a bootstrap token no way onto the broker, and the real hub refuses a forged CSR for an enrolled device id', async () => {
    const token = fleet.createToken('attacker', 5, '--auto-approve');
    // The device listener wants a certificate of the fleet CA: a token as username or password gets nowhere.
    expect(await deviceListener({})).not.toBe('accepted');
    expect(await deviceListener({ username: 'bootstrap', password: token })).not.toBe('accepted');
    const [victim] = hubQuery<{ device_id: string; public_key_sha256: string }>('SELECT device_id, public_key_sha256 FROM enrolled_devices WHERE device_id = ?', second);
    expect(victim).toBeDefined();
    const attacker = await newDeviceKey();
    const forged = await hubRequest(fleet.hubUrl, fleet.fleetCaPem, 'POST', '/api/v1/enrol', token, { schemaVersion: 1, deviceId: second, csrPem: await csrPem(second, attacker) });
    expect(forged.status).toBe(403);
    expect(forged.body.reason).toMatch(/enrolled with another key/);
    expect(hubQuery('SELECT device_id, public_key_sha256 FROM enrolled_devices WHERE device_id = ?', second)).toEqual([victim]);
  });
});
