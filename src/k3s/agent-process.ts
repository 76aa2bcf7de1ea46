import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../lib/files.js';
import { currentBootId, runsK3sBinary } from './process-check.js';

/** How a k3s process ended; an adopted process (not our child) ends with neither code nor signal known. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  at: number;
}

/** A running k3s agent, started by this fleetlet or adopted from a previous one. */
export interface AgentProcess {
  readonly pid: number;
  readonly adopted: boolean;
  readonly exited: Promise<ExitInfo>;
  signal(signal: NodeJS.Signals): void;
  isRunning(): boolean;
}

/**
 * What lets the next fleetlet find the k3s it left running: the pid, the kernel's start time of that pid and the
 * boot it belongs to (records written before boot ids were kept have none), and the version it was started as.
 */
export const ProcessRecordSchema = z.strictObject({
  pid: z.int().positive(),
  startTime: z.string().regex(/^\d+$/),
  bootId: z.string().max(64).optional(),
  binaryPath: z.string().max(4096),
  version: z.string().max(128).optional(),
  startedAt: z.int(),
});
export type ProcessRecord = z.infer<typeof ProcessRecordSchema>;

/** Field 22 of /proc/<pid>/stat (clock ticks since boot): a reused pid has another one. Undefined when gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and ')': fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

export function readProcessRecord(file: string): ProcessRecord | undefined {
  try {
    const parsed = ProcessRecordSchema.safeParse(JSON.parse(readFileSync(file, 'utf8').slice(0, 8192)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Durable: after a power cut the record either names the k3s that runs or an earlier one that the checks refuse. */
export async function writeProcessRecord(file: string, record: ProcessRecord): Promise<void> {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, JSON.stringify(record), { mode: 0o600 });
}

/** Records a k3s just started, with what identifies its pid in this boot; a process already gone is not recorded. */
export async function recordAgentProcess(
  file: string,
  pid: number,
  about: { binaryPath: string; version: string | undefined; startedAt: number },
): Promise<void> {
  const startTime = processStartTime(pid);
  if (!startTime) return;
  const bootId = currentBootId();
  const { binaryPath, version, startedAt } = about;
  await writeProcessRecord(file, { pid, startTime, ...(bootId ? { bootId } : {}), binaryPath, ...(version ? { version } : {}), startedAt });
}

/**
 * Whether the recorded k3s still runs: the same pid with the same start ticks in the same boot, running the k3s
 * binary. A pid reused by another process, even one started at the same tick of another boot, fails a check.
 */
export function recordedAgentRunning(record: ProcessRecord, dataDir: string | undefined): boolean {
  if (processStartTime(record.pid) !== record.startTime) return false;
  if (record.bootId !== undefined && record.bootId !== currentBootId()) return false;
  return runsK3sBinary(record.pid, record.binaryPath, dataDir);
}

export function clearProcessRecord(file: string): void {
  rmSync(file, { force: true });
}

export interface SpawnOptions {
  binaryPath: string;
  args: string[];
  env: Record<string, string>;
  /** k3s's stdout and stderr go here (appended), never to a pipe: a pipe to a dead fleetlet would SIGPIPE k3s. */
  logFile: string;
  /**
   * Called in the same tick as the fork, before any await: a fleetlet killed later than this can be found and
   * adopted by the next one; one killed while it waited for the spawn event would leave an unknown k3s behind.
   */
  onSpawn?: (pid: number) => void;
}

/**
 * Starts k3s in its own session (detached) so that it survives a fleetlet restart and a Ctrl-C in fleetlet's
 * terminal; fleetlet stops it deliberately.
 */
export function spawnAgent(options: SpawnOptions): Promise<AgentProcess> {
  mkdirSync(dirname(options.logFile), { recursive: true, mode: 0o700 });
  const logFd = openSync(options.logFile, 'a', 0o600);
  try {
    const child = spawn(options.binaryPath, options.args, { env: options.env, detached: true, stdio: ['ignore', logFd, logFd] });
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    let running = true;
    const exited = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        running = false;
        resolve({ code, signal, at: Date.now() });
      });
    });
    return new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () =>
        resolve({
          pid: child.pid!,
          adopted: false,
          exited,
          signal: (signal) => void child.kill(signal),
          isRunning: () => running,
        }),
      );
    });
  } finally {
    closeSync(logFd);
  }
}

/** Takes over a k3s that a previous fleetlet started, if the recorded pid is still that same process. */
export function adoptAgent(record: ProcessRecord, pollMs: number, dataDir: string | undefined): AgentProcess | undefined {
  if (!recordedAgentRunning(record, dataDir)) return undefined;
  const isRunning = () => processStartTime(record.pid) === record.startTime;
  // Not our child: the only way to learn that it ended is to look.
  const exited = new Promise<ExitInfo>((resolve) => {
    const timer = setInterval(() => {
      if (isRunning()) return;
      clearInterval(timer);
      resolve({ code: null, signal: null, at: Date.now() });
    }, pollMs);
  });
  return {
    pid: record.pid,
    adopted: true,
    exited,
    isRunning,
    signal: (signal) => {
      if (isRunning()) process.kill(record.pid, signal);
    },
  };
}
