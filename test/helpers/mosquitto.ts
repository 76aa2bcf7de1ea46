import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { join } from 'node:path';
import { freePort, waitForPort } from './ports.js';
import { tempDir } from './paths.js';

/**
 * A real mosquitto (the Debian package) on a free loopback port, started and stopped by the test.
 * CI sets TEST_REQUIRE_MOSQUITTO=1 so that a missing mosquitto fails loudly instead of being skipped.
 */
export interface TestBroker {
  port: number;
  url: string;
  kind: 'mosquitto' | 'embedded';
  /** Stops the broker (SIGTERM) and keeps its port so that restart() comes back on the same address. */
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** Stops it for good and removes its files. */
  close(): Promise<void>;
  /** mosquitto only: SIGHUP, which makes it read its ACL and password files again. */
  reload?(): void;
}

export interface BrokerOptions {
  /** Extra mosquitto.conf lines for the listener (TLS, ACL, auth). */
  listenerLines?: string[];
  /** Lines before the listener (global options). */
  globalLines?: string[];
  port?: number;
  /** Further listeners on loopback, each with its own lines (e.g. the shipped operator listener). */
  extraListeners?: { port: number; lines: string[] }[];
  /** Keep sessions and queued messages in this directory across restart() (default: in memory only). */
  persistenceDir?: string;
}

export const MOSQUITTO = findMosquitto();

function findMosquitto(): string | undefined {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) {
    if (spawnSync(candidate, ['-h']).error === undefined) return candidate;
  }
  return undefined;
}

export function mosquittoAvailable(): boolean {
  if (!MOSQUITTO && process.env.TEST_REQUIRE_MOSQUITTO === '1') {
    throw new Error('mosquitto is required (TEST_REQUIRE_MOSQUITTO=1) but not installed: apt-get install mosquitto');
  }
  return MOSQUITTO !== undefined;
}

export async function startMosquitto(options: BrokerOptions = {}): Promise<TestBroker> {
  if (!mosquittoAvailable()) throw new Error('mosquitto is not installed (apt-get install mosquitto)');
  const port = options.port ?? (await freePort());
  const { dir, cleanup } = tempDir('fleetlet-mosquitto-');
  // Started as root, mosquitto drops to its own user, which must be able to write its persistence file.
  if (options.persistenceDir && process.getuid?.() === 0) {
    const owner = spawnSync('id', ['-u', 'mosquitto'], { encoding: 'utf8' });
    if (owner.status === 0) chownSync(options.persistenceDir, Number(owner.stdout.trim()), 0);
  }
  const confFile = join(dir, 'mosquitto.conf');
  writeFileSync(
    confFile,
    [
      ...(options.persistenceDir ? ['persistence true', `persistence_location ${options.persistenceDir}/`] : ['persistence false']),
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'per_listener_settings false',
      // The observers in tests share a loaded process with everything else: mosquitto's default of 1000 queued
      // messages per slow subscriber would drop messages the test then misses.
      'max_queued_messages 0',
      ...(options.globalLines ?? []),
      `listener ${port} 127.0.0.1`,
      ...(options.listenerLines ?? ['allow_anonymous true']),
      ...(options.extraListeners ?? []).flatMap((extra) => [`listener ${extra.port} 127.0.0.1`, ...extra.lines]),
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined;
  let stderr = '';
  const start = async () => {
    stderr = '';
    child = spawn(MOSQUITTO!, ['-c', confFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<never>((_, reject) =>
      child!.once('exit', (code) => reject(new Error(`mosquitto exited with ${code}: ${stderr}`))),
    );
    await Promise.race([Promise.all([port, ...(options.extraListeners ?? []).map((e) => e.port)].map((p) => waitForPort(p))), exited]);
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const gone = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    await gone;
  };
  await start();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    kind: 'mosquitto',
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    close: async () => {
      await stop();
      cleanup();
    },
    reload: () => void child?.kill('SIGHUP'),
  };
}

/**
 * The broker for tests that need only plain MQTT: the real mosquitto, or, on a developer machine without it, the
 * embedded aedes broker (with a notice). CI sets TEST_REQUIRE_MOSQUITTO=1, so there it never falls back.
 * TEST_BROKER=embedded forces the embedded broker, to check that the suite passes against it too.
 * Tests that need mosquitto's configuration (TLS, ACL) check mosquittoAvailable() and skip otherwise.
 */
export async function startTestBroker(options: { port?: number } = {}): Promise<TestBroker> {
  if (process.env.TEST_BROKER !== 'embedded' && mosquittoAvailable()) return startMosquitto(options);
  if (process.env.TEST_REQUIRE_MOSQUITTO === '1') {
    throw new Error('TEST_REQUIRE_MOSQUITTO=1: refusing to fall back to the embedded broker');
  }
  if (!embeddedNoticeShown) {
    embeddedNoticeShown = true;
    console.warn(`${MOSQUITTO ? 'TEST_BROKER=embedded' : 'mosquitto is not installed'}: these tests run against the embedded aedes broker`);
  }
  return startEmbeddedBroker(options.port ?? (await freePort()));
}

let embeddedNoticeShown = false;

/** aedes in this process; stop() drops every client and forgets retained messages, as mosquitto without persistence does. */
export async function startEmbeddedBroker(port: number): Promise<TestBroker> {
  let running: { broker: Aedes; close: () => Promise<void> } | undefined;
  const start = async () => {
    const broker = await Aedes.createBroker();
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      broker.handle(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    running = {
      broker,
      close: async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        await closed;
      },
    };
  };
  const stop = async () => {
    const current = running;
    running = undefined;
    await current?.close();
  };
  await start();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    kind: 'embedded',
    stop,
    restart: async () => {
      await stop();
      await start();
    },
    close: stop,
  };
}
