import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { processStartTime, type ProcessRecord } from './agent-process.js';

/**
 * The process record can only be written once k3s has a pid, and spawning takes a while (fork and exec of a large
 * process): a fleetlet killed inside that window would leave a k3s nobody knows, and the next fleetlet would start a
 * second one beside it. So before each spawn a launch id is written here and handed to k3s in its environment; a
 * fleetlet that finds no adoptable record looks for the process that carries the last launch id.
 */
// Not a FLEETLET_* name: k3s gets none of fleetlet's own variables, and this one is no setting of fleetlet's.
export const LAUNCH_ID_ENV = 'NODE_AGENT_LAUNCH_ID';

const LaunchIntentSchema = z.strictObject({ launchId: z.uuid(), binaryPath: z.string().max(4096) });

/** Writes a fresh launch id before a spawn and returns it. */
export function writeLaunchIntent(file: string, binaryPath: string): string {
  const launchId = randomUUID();
  writeFileSync(`${file}.tmp`, JSON.stringify({ launchId, binaryPath }), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
  return launchId;
}

/** The k3s started under the last launch id, as a record to adopt it by; undefined when none runs. */
export function findLaunchedProcess(file: string, startedAt: number): ProcessRecord | undefined {
  let intent;
  try {
    intent = LaunchIntentSchema.safeParse(JSON.parse(readFileSync(file, 'utf8').slice(0, 8192)));
  } catch {
    return undefined;
  }
  if (!intent.success) return undefined;
  const marker = `\0${LAUNCH_ID_ENV}=${intent.data.launchId}\0`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').slice(0, 8192).split('\0');
      if (!cmdline.slice(0, 2).includes(intent.data.binaryPath)) continue;
      if (!`\0${readFileSync(`/proc/${entry}/environ`, 'utf8')}`.includes(marker)) continue;
      const startTime = processStartTime(Number(entry));
      if (startTime) return { pid: Number(entry), startTime, binaryPath: intent.data.binaryPath, startedAt };
    } catch {
      // the process ended while we looked, or is not ours to read
    }
  }
  return undefined;
}
