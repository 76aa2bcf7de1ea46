import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { issueCert, createCa, type KeyPair } from './certs.js';
import type { CliResult } from './cli.js';
import { writeHubConfig } from './hub-process.js';
import { startMosquitto, type TestBroker } from './mosquitto.js';
import { FLEETLET_BUNDLE } from './paths.js';
import { freePort } from './ports.js';
import { SHIPPED_MOSQUITTO_DIR, shippedMosquittoConfig } from './shipped-broker.js';
import { waitFor } from './wait.js';

/** How a fleetlet command line is run: the bundle under this node, or a built single binary. */
export type FleetletCommand = (args: string[]) => [string, string[]];

export const bundleCommand: FleetletCommand = (args) => [process.execPath, [FLEETLET_BUNDLE, ...args]];

const cleanEnv = () => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' });

/** A fleetlet process run until it ends, or kept running (an agent, the hub) with its output collected. */
export function runFleetlet(command: FleetletCommand, args: string[], timeoutMs = 60_000): CliResult {
  const [file, argv] = command(args);
  const result = spawnSync(file, argv, { env: cleanEnv(), encoding: 'utf8', timeout: timeoutMs });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

export interface FleetletProcess {
  output(): string;
  running(): boolean;
  exited: Promise<number | null>;
  /** SIGTERM (once), then its exit code. */
  stop(): Promise<number | null>;
}

export function startFleetlet(command: FleetletCommand, args: string[]): FleetletProcess {
  const [file, argv] = command(args);
  const child = spawn(file, argv, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    output: () => output,
    running: () => child.exitCode === null && child.signalCode === null,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * The cloud side of zero-touch enrolment with every part real: the fleet CA made by `fleetlet hub ca init`, a
 * `fleetlet hub` process serving enrolment over HTTPS and ingesting from the broker, and mosquitto with the shipped
 * config (device listener: a certificate of the fleet CA, CN = username = client id, the hub's CRL, the shipped
 * ACL; the hub on the operator listener as `fleetlet-hub`). The fleet CA also signs the hub's and the broker's
 * server certificates, so a device needs that one CA and nothing else.
 */
export interface EnrolmentHubFleet {
  hubConfig: string;
  hubUrl: string;
  fleetCaFile: string;
  fleetCaPem: string;
  crlPath: string;
  hubDatabase: string;
  deviceUrl: string;
  broker: TestBroker;
  hub: FleetletProcess;
  /** `fleetlet hub enrol-token create`; the token is alone on stdout. */
  createToken(name: string, uses: number, approval: '--auto-approve' | '--manual'): string;
  close(): Promise<void>;
}

export async function startEnrolmentHubFleet(
  dir: string,
  options: { command: FleetletCommand; certificateDays: number; disconnectAfterRevokeSeconds?: number },
): Promise<EnrolmentHubFleet> {
  const { command } = options;
  chmodSync(dir, 0o755);
  const caDir = join(dir, 'fleet-ca');
  const made = runFleetlet(command, ['hub', 'ca', 'init', '--dir', caDir, '--name', 'e2e fleet CA']);
  if (made.code !== 0) throw new Error(`hub ca init exited with ${made.code}: ${made.stderr}`);
  const fleetCaFile = join(caDir, 'ca.crt');
  const fleetCa: KeyPair = { cert: fleetCaFile, key: join(caDir, 'ca.key') };
  const hubTls = issueCert(fleetCa, dir, 'hub', { server: true, altNames: ['IP:127.0.0.1'] });
  const brokerTls = issueCert(fleetCa, dir, 'broker', { server: true, altNames: ['IP:127.0.0.1'] });
  const operatorCa = createCa(dir, 'operator-ca');
  const hubClient = issueCert(operatorCa, dir, 'fleetlet-hub');

  const brokerDir = join(dir, 'broker');
  mkdirSync(brokerDir, { mode: 0o755 });
  copyFileSync(fleetCaFile, join(brokerDir, 'ca.crt'));
  copyFileSync(brokerTls.cert, join(brokerDir, 'broker.crt'));
  copyFileSync(brokerTls.key, join(brokerDir, 'broker.key'));
  copyFileSync(operatorCa.cert, join(brokerDir, 'operator-ca.crt'));
  copyFileSync(join(SHIPPED_MOSQUITTO_DIR, 'acl'), join(brokerDir, 'acl'));
  // mosquitto started as root reads these after dropping to its own user.
  for (const name of ['ca.crt', 'broker.crt', 'broker.key', 'operator-ca.crt', 'acl']) chmodSync(join(brokerDir, name), 0o644);

  const devicePort = await freePort();
  const operatorPort = await freePort();
  const crlPath = join(brokerDir, 'crl.pem');
  const hubDatabase = join(dir, 'hub.db');
  const hubConfig = writeHubConfig({
    dir,
    brokerUrl: `mqtts://127.0.0.1:${operatorPort}`,
    brokerExtra: { allowPlaintext: false, tls: { caFile: fleetCaFile, certFile: hubClient.cert, keyFile: hubClient.key } },
    database: { file: hubDatabase },
    replicaId: 'enrolment',
    connections: 1,
    extra: {
      http: { listen: '127.0.0.1:0', tlsCertFile: hubTls.cert, tlsKeyFile: hubTls.key },
      enrolment: {
        caCertFile: fleetCa.cert,
        caKeyFile: fleetCa.key,
        crlPath,
        certificateDays: options.certificateDays,
        pendingRetrySeconds: 1,
        disconnectAfterRevokeSeconds: options.disconnectAfterRevokeSeconds ?? 2,
      },
    },
  });
  // The hub writes the CRL at its start, and mosquitto does not start without the crlfile it names.
  const hub = startFleetlet(command, ['hub', '--config', hubConfig]);
  let broker: TestBroker | undefined;
  try {
    await waitFor(() => existsSync(crlPath) || !hub.running(), () => `the hub to write its CRL: ${hub.output()}`, 60_000);
    const shipped = shippedMosquittoConfig(brokerDir, { crl: true });
    broker = await startMosquitto({ ...shipped, port: devicePort, extraListeners: [{ port: operatorPort, lines: shipped.operatorListenerLines }] });
    const listening = /"url":"(https:\/\/[^"]+)".*hub API listening/;
    await waitFor(
      () => (hub.output().includes('hub subscribed: ingesting') && listening.test(hub.output())) || !hub.running(),
      () => `the hub to subscribe and listen: ${hub.output()}`,
      60_000,
    );
    if (!hub.running()) throw new Error(`the hub exited: ${hub.output()}`);
    const hubUrl = listening.exec(hub.output())![1]!;
    const started = broker;
    return {
      hubConfig,
      hubUrl,
      fleetCaFile,
      fleetCaPem: readFileSync(fleetCaFile, 'utf8'),
      crlPath,
      hubDatabase,
      deviceUrl: `mqtts://127.0.0.1:${devicePort}`,
      broker: started,
      hub,
      createToken: (name, uses, approval) => {
        const created = runFleetlet(command, ['hub', 'enrol-token', 'create', '--config', hubConfig, '--name', name, '--uses', String(uses), '--expires', '1h', approval]);
        if (created.code !== 0) throw new Error(`enrol-token create exited with ${created.code}: ${created.stderr}`);
        return created.stdout.trim();
      },
      close: async () => {
        await hub.stop();
        await started.close();
      },
    };
  } catch (err) {
    await hub.stop();
    await broker?.close();
    throw err;
  }
}

/**
 * The config of a device flashed from one image: the hub's URL, the fleet CA and a bootstrap token file, nothing
 * else (no device id: it comes from the board's machine id under `identityRoot`; no client certificate or key).
 */
export function imageDeviceSettings(fleet: EnrolmentHubFleet, identityRoot: string, tokenFile: string): Record<string, unknown> {
  return {
    device: { id: undefined, identityRoot },
    broker: { url: fleet.deviceUrl, tls: { caFile: fleet.fleetCaFile }, keepaliveSeconds: 5, reconnect: { baseMs: 200, capMs: 1000 } },
    enrolment: { hubUrl: fleet.hubUrl, bootstrapTokenFile: tokenFile },
    telemetry: { intervalSeconds: 5, http: { enabled: false } },
  };
}

/** Reads the hub's own database (SQLite, written by the hub process) read-only. */
export function queryHub<T>(fleet: EnrolmentHubFleet, sql: string, ...params: unknown[]): T[] {
  const db = new Database(fleet.hubDatabase, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

/** How many status samples of the device the hub received after `afterMs`: they crossed the broker with its certificate. */
export function statusSamplesReceived(fleet: EnrolmentHubFleet, deviceId: string, afterMs = 0): number {
  return queryHub<{ n: number }>(fleet, 'SELECT count(*) AS n FROM status_samples WHERE device_id = ? AND received_at_ms > ?', deviceId, afterMs)[0]!.n;
}
