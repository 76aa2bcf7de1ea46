import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BINARY_PATH, CONFIG_PATH, ENABLE_LINK, TRUST_DIR, UNIT_PATH } from './provision.js';
import { UNIT_NAME } from './provision-unit.js';
import { loadConfig } from '../config/load.js';
import { ConfigSchema } from '../config/schema.js';
import { EXIT } from './exit-codes.js';
import type { CliIo, ConfigSelection } from './program.js';
import { entryExists } from '../lib/files.js';

export interface UninstallOptions {
  root: string;
  /** Also remove the state (queue, journal), the config and k3s's binary and data dir. */
  purge: boolean;
  /** Also remove /etc/rancher/node: after that, the k3s server rejects this node until its entry is deleted. */
  removeNodeIdentity: boolean;
  k3sBinaryPath: string;
  k3sDataDir: string;
  stateDir: string;
  /** How long k3s gets to stop after its one SIGTERM. */
  stopTimeoutMs: number;
}

export interface UninstallReport {
  removed: string[];
  stoppedK3s: number[];
  /** k3s processes that were still running when the timeout ran out. */
  stillRunning: number[];
}

/**
 * Removes what fleetlet installed. The service is stopped through systemd when this is the running system (its stop
 * leaves k3s running, as every stop of fleetlet does); then the k3s agent running from this install gets one
 * SIGTERM, since a second one makes it exit with an error (k3s-facts §3). Containers are left to k3s's own killall
 * script.
 */
export async function uninstall(options: UninstallOptions): Promise<UninstallReport> {
  const live = options.root === '/' && existsSync('/run/systemd/system');
  if (live) systemctl(['disable', '--now', UNIT_NAME]);

  const k3sBinary = join(options.root, options.k3sBinaryPath);
  const k3sPids = k3sAgentPids(k3sBinary);
  for (const pid of k3sPids) process.kill(pid, 'SIGTERM');
  const stillRunning = await waitForExit(k3sPids, options.stopTimeoutMs);

  const paths = [UNIT_PATH, ENABLE_LINK, BINARY_PATH, '/var/cache/fleetlet'];
  if (options.purge) paths.push(CONFIG_PATH, TRUST_DIR, '/etc/fleetlet', options.stateDir, options.k3sBinaryPath, options.k3sDataDir);
  if (options.removeNodeIdentity) paths.push('/etc/rancher/node');
  const removed: string[] = [];
  for (const path of paths) {
    const target = join(options.root, path);
    if (!entryExists(target)) continue;
    rmSync(target, { recursive: true, force: true });
    removed.push(path);
  }
  if (live) systemctl(['daemon-reload']);
  return { removed, stoppedK3s: k3sPids.filter((pid) => !stillRunning.includes(pid)), stillRunning };
}

/** Processes running `<binary> agent`, found by their command line (the binary may be a script under test). */
export function k3sAgentPids(binary: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const at = argv.indexOf(binary);
      if (at >= 0 && argv[at + 1] === 'agent' && !isZombie(entry)) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

async function waitForExit(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let running = pids;
  while (running.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    running = running.filter((pid) => existsSync(`/proc/${pid}`) && !isZombie(String(pid)));
  }
  return running;
}

function isZombie(pid: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

function systemctl(args: string[]): void {
  try {
    execFileSync('systemctl', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
  } catch {
    // Not installed as a service, or already stopped: the files are removed either way.
  }
}

/** The command line's view: paths come from the device's config when it loads, else from the defaults. */
export interface UninstallCommand {
  selection: ConfigSelection;
  root: string;
  purge: boolean;
  removeNodeIdentity: boolean;
}

export async function runUninstall(command: UninstallCommand, io: CliIo, stopTimeoutMs = 60_000): Promise<number> {
  const config = configOrDefaults(command.selection, io.env);
  const options: UninstallOptions = {
    root: command.root,
    purge: command.purge,
    removeNodeIdentity: command.removeNodeIdentity,
    k3sBinaryPath: config.k3s.binaryPath,
    k3sDataDir: config.k3s.dataDir,
    stateDir: config.stateDir,
    stopTimeoutMs,
  };
  const report = await uninstall(options);
  for (const pid of report.stoppedK3s) io.stdout(`stopped k3s agent (pid ${pid})\n`);
  for (const path of report.removed) io.stdout(`removed ${path}\n`);
  if (!options.removeNodeIdentity) io.stdout('kept /etc/rancher/node (the k3s node identity); --remove-node-identity removes it\n');
  if (report.stillRunning.length > 0) {
    io.stderr(`k3s agent still running after ${stopTimeoutMs} ms: pid ${report.stillRunning.join(', ')}; run k3s-killall.sh\n`);
    return EXIT.FAILURE;
  }
  return EXIT.OK;
}

function configOrDefaults(selection: ConfigSelection, env: Record<string, string | undefined>) {
  try {
    return loadConfig({ path: selection.path, explicit: selection.explicit, env, sets: selection.sets }).config;
  } catch {
    // A broken or absent config must not block removing fleetlet: fall back to the default paths.
    return { stateDir: '/var/lib/fleetlet', k3s: ConfigSchema.shape.k3s.parse(undefined) };
  }
}
