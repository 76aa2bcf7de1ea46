import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { K3sStatus } from './supervisor-options.js';

/** The supervisor's last status, for `fleetlet k3s status` run in another process while the agent runs. */
export const STATUS_FILE = 'agent-status.json';

export type SavedStatus = K3sStatus & { savedAt: number };

export function writeStatusFile(workDir: string, status: K3sStatus, now: number): void {
  const file = join(workDir, STATUS_FILE);
  writeFileSync(`${file}.tmp`, JSON.stringify({ ...status, savedAt: now }), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

export function readStatusFile(workDir: string): SavedStatus | undefined {
  try {
    return JSON.parse(readFileSync(join(workDir, STATUS_FILE), 'utf8').slice(0, 256 * 1024)) as SavedStatus;
  } catch {
    return undefined;
  }
}
