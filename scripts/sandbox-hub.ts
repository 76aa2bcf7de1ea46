// The sandbox's cloud side beside its agent: `fleetlet hub` on SQLite, all of it under the sandbox directory. The
// hub holds MQTT 5 sessions in a shared subscription, which the embedded aedes broker (MQTT 3.1.1) cannot give it,
// so the sandbox runs it when the Debian package mosquitto is installed, with mosquitto as the sandbox's broker.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { addOperator, createApiToken } from '../src/hub/auth/accounts.js';
import { openHubDatabase } from '../src/hub/db/open.js';

export const SANDBOX_OPERATOR = 'sandbox';

export function findMosquitto(): string | undefined {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) {
    if (spawnSync(candidate, ['-h']).error === undefined) return candidate;
  }
  return undefined;
}

/** mosquitto on the given loopback port, anonymous, in memory (as the embedded broker: an outage forgets sessions). */
export async function startMosquittoBroker(binary: string, devDir: string, port: number): Promise<{ port: number; close: () => Promise<void> }> {
  const dir = join(devDir, 'broker');
  mkdirSync(dir, { recursive: true });
  const confFile = join(dir, 'mosquitto.conf');
  const lines = ['persistence false', 'log_dest stderr', 'log_type error', 'max_queued_messages 100000', `listener ${port} 127.0.0.1`, 'allow_anonymous true', ''];
  writeFileSync(confFile, `# Written by npm start on every run.\n${lines.join('\n')}`);
  const logFd = openSync(join(dir, 'mosquitto.log'), 'a');
  // Its own process group, as the agent's: Ctrl-C must not take the broker away before the agent said goodbye.
  const child = spawn(binary, ['-c', confFile], { stdio: ['ignore', 'ignore', logFd], detached: true });
  closeSync(logFd);
  process.on('exit', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`mosquitto exited with ${code} (see ${dir}/mosquitto.log)`))));
  await Promise.race([waitForPort(port), exited]);
  exited.catch(() => {});
  return { port, close: () => stopChild(child) };
}

export interface SandboxHub {
  url: string;
  tokenFile: string;
  /** The dashboard's login: the password only in the run that made the account (it is kept 0600 in passwordFile). */
  login: { username: string; password?: string; passwordFile: string };
  logFile: string;
  stop(): Promise<void>;
}

/**
 * Makes the sandbox operator's account and an API token through the hub's own account code (the password and the
 * token in 0600 files under the sandbox's hub directory), then runs `fleetlet hub` as the binary would.
 */
export async function startSandboxHub(options: { rootDir: string; devDir: string; brokerUrl: string; httpPort: number; env: NodeJS.ProcessEnv }): Promise<SandboxHub> {
  const dir = join(options.devDir, 'hub');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const databaseFile = join(dir, 'hub.db');
  const tokenFile = join(dir, 'sandbox.token');
  const passwordFile = join(dir, 'sandbox.password');
  let password: string | undefined;
  const hub = await openHubDatabase({ file: databaseFile });
  try {
    const now = Date.now();
    const existing = await hub.db.selectFrom('operators').select('id').where('username', '=', SANDBOX_OPERATOR).executeTakeFirst();
    if (!existing) {
      password = randomBytes(18).toString('base64url');
      writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
      await addOperator(hub, SANDBOX_OPERATOR, 'operator', password, now);
    }
    const created = await createApiToken(hub, { username: SANDBOX_OPERATOR, name: `npm-start-${now}` }, now);
    writeFileSync(tokenFile, `${created.token}\n`, { mode: 0o600 });
  } finally {
    await hub.close();
  }
  const configFile = join(dir, 'hub.yaml');
  const config = {
    broker: { url: options.brokerUrl, allowPlaintext: true },
    hub: { replicaId: 'sandbox', shareGroup: 'sandbox', connections: 2, database: { file: databaseFile }, http: { listen: `127.0.0.1:${options.httpPort}` } },
    log: { level: 'info' },
  };
  writeFileSync(configFile, `# Written by npm start on every run; edit scripts/sandbox-hub.ts instead.\n${stringify(config)}`);
  const logFile = join(dir, 'hub.log');
  const logFd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', join(options.rootDir, 'src/bin.ts'), 'hub', '--config', configFile], {
    stdio: ['ignore', logFd, logFd],
    env: options.env,
    detached: true,
  });
  closeSync(logFd);
  process.on('exit', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  return {
    url: `http://127.0.0.1:${options.httpPort}`,
    tokenFile,
    login: { username: SANDBOX_OPERATOR, password, passwordFile },
    logFile,
    stop: () => stopChild(child),
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  await gone;
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((done) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        done(true);
      });
      socket.once('error', () => done(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((done) => setTimeout(done, 100));
  }
}
