import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';
import { tempDir } from './paths.js';

/**
 * A real PostgreSQL (Debian's `postgresql` package) in a temp dir on a free loopback port, started and stopped by the
 * test, as mosquitto.ts does for the broker. initdb refuses to run as root, so as root the cluster belongs to the
 * `postgres` user (runuser). Without postgresql the tests that need it are skipped with a notice; CI sets
 * TEST_REQUIRE_POSTGRES=1 so that a missing postgresql fails instead.
 */
export interface TestPostgres {
  port: number;
  /** A new empty database on this server, by its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server for good and removes its files. */
  close(): Promise<void>;
}

const PG_BIN = findPostgresBin();
const SUPERUSER = 'fleetlet';

function findPostgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin')).find((bin) => existsSync(join(bin, 'initdb')));
}

let noticeShown = false;

/** Whether PostgreSQL tests can run here; says once what is skipped when they cannot. */
export function postgresAvailable(): boolean {
  if (PG_BIN) return true;
  if (process.env.TEST_REQUIRE_POSTGRES === '1') {
    throw new Error('postgresql is required (TEST_REQUIRE_POSTGRES=1) but not installed: apt-get install postgresql');
  }
  if (!noticeShown) {
    noticeShown = true;
    console.warn('postgresql is not installed (apt-get install postgresql): the PostgreSQL variants of the hub tests are SKIPPED');
  }
  return false;
}

/** The databases the hub tests run against: SQLite always, PostgreSQL when installed. */
export function hubDialects(): ('sqlite' | 'postgres')[] {
  return postgresAvailable() ? ['sqlite', 'postgres'] : ['sqlite'];
}

export async function startPostgres(): Promise<TestPostgres> {
  if (!PG_BIN) throw new Error('postgresql is not installed (apt-get install postgresql)');
  const port = await freePort();
  const { dir, cleanup } = tempDir('fleetlet-postgres-');
  const dataDir = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const run = (program: string, args: string[]) => {
    const [command, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(PG_BIN, program), ...args]] : [join(PG_BIN, program), args];
    const result = spawnSync(command, argv, { encoding: 'utf8', timeout: 60_000 });
    if (result.status !== 0) throw new Error(`${program} failed (${result.status}): ${result.stderr}${result.stdout}`);
  };
  run('initdb', ['-D', dataDir, '-A', 'trust', '-U', SUPERUSER, '--no-sync', '-E', 'UTF8']);
  const serverOptions = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`;
  run('pg_ctl', ['-D', dataDir, '-o', serverOptions, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  const adminUrl = `postgres://${SUPERUSER}@127.0.0.1:${port}/postgres`;
  return {
    port,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/[^a-z0-9_]/g, '_')}"`);
      } finally {
        await client.end();
      }
      return `postgres://${SUPERUSER}@127.0.0.1:${port}/${name.replace(/[^a-z0-9_]/g, '_')}`;
    },
    async close() {
      try {
        run('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', 'stop']);
      } finally {
        cleanup();
      }
    },
  };
}
