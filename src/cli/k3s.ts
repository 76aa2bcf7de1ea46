import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { readProcessRecord, recordedAgentRunning } from '../k3s/agent-process.js';
import { installFromFolder } from '../k3s/airgap.js';
import { installFromBundle } from '../k3s/bundle.js';
import { binaryVersion } from '../k3s/control.js';
import { K3sInstaller } from '../k3s/installer.js';
import { WORK_DIR_NAME } from '../k3s/k3s-part.js';
import { k3sArch } from '../k3s/release.js';
import { LOG_FILE, RECORD_FILE } from '../k3s/supervisor.js';
import { readStatusFile } from '../k3s/status-file.js';
import { isHeld } from '../k3s/hold.js';
import { releaseHeldK3s, stopHeldK3s } from './k3s-hold.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { loadSelectedConfig } from './load-selected-config.js';
import type { CliIo, ConfigSelection } from './program.js';
import { errorMessage } from '../lib/errors.js';

/** `fleetlet k3s status|install|logs|stop|start`, for a person at the device. */
export type K3sCliAction =
  | { kind: 'status'; json: boolean }
  | { kind: 'stop' }
  | { kind: 'start' }
  | { kind: 'install'; version?: string; from?: string }
  | { kind: 'logs'; lines: number };

export interface K3sCliOptions {
  selection: ConfigSelection;
  action: K3sCliAction;
  /** Whether stderr is a terminal (then install shows progress). */
  interactive?: boolean;
}

const MAX_LOG_LINES = 10_000;
/** How long `k3s stop` waits for k3s to exit after its one SIGTERM (k3s itself exits almost at once). */
const STOP_TIMEOUT_MS = 60_000;
const LOG_TAIL_BYTES = 4 * 1024 * 1024;

export async function runK3sCli(options: K3sCliOptions, io: CliIo): Promise<number> {
  const loaded = loadSelectedConfig(options.selection, io);
  if (!loaded) return EXIT.CONFIG;
  const { config } = loaded;
  const workDir = join(config.stateDir, WORK_DIR_NAME);
  try {
    switch (options.action.kind) {
      case 'status':
        return await showStatus(config.k3s.binaryPath, config.k3s.dataDir, workDir, options.action.json, io);
      case 'stop':
        return await stopHeldK3s(workDir, config.k3s.dataDir, STOP_TIMEOUT_MS, io);
      case 'start':
        return await releaseHeldK3s(workDir, io);
      case 'logs':
        return showLogs(join(workDir, LOG_FILE), Math.min(Math.max(1, options.action.lines), MAX_LOG_LINES), io);
      case 'install':
        return await install(config, options.action, options.interactive ?? false, io);
    }
  } catch (err) {
    io.stderr(`fleetlet k3s: ${errorMessage(err)}\n`);
    return exitCodeFor(err);
  }
}

async function showStatus(binaryPath: string, dataDir: string, workDir: string, json: boolean, io: CliIo): Promise<number> {
  const version = await binaryVersion(binaryPath);
  const status = readStatusFile(workDir);
  const record = readProcessRecord(join(workDir, RECORD_FILE));
  const running = record !== undefined && recordedAgentRunning(record, dataDir);
  const held = isHeld(workDir);
  if (json) {
    const view = { binaryPath, installed: existsSync(binaryPath), version, running, pid: running ? record.pid : undefined, held, status };
    io.stdout(`${JSON.stringify(view, null, 2)}\n`);
    return EXIT.OK;
  }
  const lines = [`binary:   ${existsSync(binaryPath) ? `${binaryPath} (${version ?? 'version unknown'})` : `not installed at ${binaryPath}`}`];
  lines.push(`process:  ${running ? `running, pid ${record.pid}` : 'not running'}`);
  if (held) lines.push('held:     stopped by `fleetlet k3s stop` or a k3s.stop command; `fleetlet k3s start` lets it run');
  if (!status) lines.push('state:    unknown (the agent has not supervised k3s yet)');
  else {
    lines.push(`state:    ${status.state} since ${new Date(status.since).toISOString()}${status.adopted ? ' (adopted)' : ''}`);
    lines.push(`restarts: ${status.restarts}`);
    if (status.lastExit) lines.push(`last exit: code ${status.lastExit.code ?? '-'} signal ${status.lastExit.signal ?? '-'} at ${new Date(status.lastExit.at).toISOString()}`);
    if (status.nextStartAt) lines.push(`next start: ${new Date(status.nextStartAt).toISOString()}`);
    if (status.problem) {
      lines.push(`problem:  ${status.problem.kind}`, `  seen:   ${status.problem.line}`, `  fix:    ${status.problem.remedy}`);
    }
  }
  io.stdout(`${lines.join('\n')}\n`);
  return EXIT.OK;
}

function showLogs(file: string, count: number, io: CliIo): number {
  if (!existsSync(file)) {
    io.stderr(`fleetlet k3s: no k3s log yet (${file})\n`);
    return EXIT.FAILURE;
  }
  const size = statSync(file).size;
  const length = Math.min(size, LOG_TAIL_BYTES);
  const buffer = Buffer.alloc(length);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buffer, 0, length, size - length);
  } finally {
    closeSync(fd);
  }
  const lines = buffer.toString('utf8').split('\n').filter(Boolean);
  io.stdout(`${lines.slice(-count).join('\n')}\n`);
  return EXIT.OK;
}

async function install(config: Config, action: Extract<K3sCliAction, { kind: 'install' }>, interactive: boolean, io: CliIo): Promise<number> {
  const installer = new K3sInstaller({
    binaryPath: config.k3s.binaryPath,
    arch: k3sArch(process.arch),
    artifactUrl: config.k3s.artifactUrl,
    channel: config.k3s.channel,
    channelUrl: config.k3s.channelUrl,
    version: action.version ?? config.k3s.version,
    searchPath: io.env.PATH ?? '',
  });
  if (action.from) {
    const install = statSync(action.from).isFile() ? installFromBundle : installFromFolder;
    const result = await install(action.from, {
      binaryPath: config.k3s.binaryPath,
      dataDir: config.k3s.dataDir,
      arch: k3sArch(process.arch),
      checkDiskSpace: (dir, bytes) => installer.checkDiskSpace(dir, bytes),
    });
    io.stdout(`installed ${result.binaryPath} from ${action.from} (sha256 ${result.sha256})\n`);
    for (const image of result.images) io.stdout(`images: ${image}\n`);
    return EXIT.OK;
  }
  let lastShown = 0;
  const progress = (received: number, total: number | undefined) => {
    const now = Date.now();
    if (now - lastShown < 200 && received !== total) return;
    lastShown = now;
    const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
    io.stderr(`\rdownloading k3s: ${mib(received)}${total ? ` / ${mib(total)}` : ''} MiB`);
  };
  const result = await installer.install(interactive ? progress : undefined);
  if (interactive) io.stderr('\n');
  io.stdout(
    result.changed
      ? `installed k3s ${result.version} at ${result.binaryPath}${result.previousPath ? ` (previous binary kept at ${result.previousPath})` : ''}\n`
      : `k3s ${result.version} is already installed at ${result.binaryPath}\n`,
  );
  for (const link of result.links) io.stdout(`linked ${link} -> ${result.binaryPath}\n`);
  io.stdout('the running agent starts it within a minute, or restart fleetlet\n');
  return EXIT.OK;
}
