import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, waitForPort } from './ports.js';
import { tempDir } from './paths.js';

/**
 * A real mosquitto (the Debian package) on a free loopback port, started and stopped by the test.
 * CI sets FLEETLET_TEST_REQUIRE_MOSQUITTO=1 so that a missing mosquitto fails loudly instead of being skipped.
 */
export interface TestBroker {
  port: number;
  url: string;
  kind: 'mosquitto';
  /** Stops the broker (SIGTERM) and keeps its port so that restart() comes back on the same address. */
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** Stops it for good and removes its files. */
  close(): Promise<void>;
}

export interface BrokerOptions {
  /** Extra mosquitto.conf lines for the listener (TLS, ACL, auth). */
  listenerLines?: string[];
  /** Lines before the listener (global options). */
  globalLines?: string[];
  port?: number;
}

export const MOSQUITTO = findMosquitto();

function findMosquitto(): string | undefined {
  for (const candidate of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) {
    if (spawnSync(candidate, ['-h']).error === undefined) return candidate;
  }
  return undefined;
}

export function mosquittoAvailable(): boolean {
  if (!MOSQUITTO && process.env.FLEETLET_TEST_REQUIRE_MOSQUITTO === '1') {
    throw new Error('mosquitto is required (FLEETLET_TEST_REQUIRE_MOSQUITTO=1) but not installed: apt-get install mosquitto');
  }
  return MOSQUITTO !== undefined;
}

export async function startMosquitto(options: BrokerOptions = {}): Promise<TestBroker> {
  if (!mosquittoAvailable()) throw new Error('mosquitto is not installed (apt-get install mosquitto)');
  const port = options.port ?? (await freePort());
  const { dir, cleanup } = tempDir('fleetlet-mosquitto-');
  const confFile = join(dir, 'mosquitto.conf');
  writeFileSync(
    confFile,
    [
      'persistence false',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'per_listener_settings false',
      ...(options.globalLines ?? []),
      `listener ${port} 127.0.0.1`,
      ...(options.listenerLines ?? ['allow_anonymous true']),
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
    await Promise.race([waitForPort(port), exited]);
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
  };
}
