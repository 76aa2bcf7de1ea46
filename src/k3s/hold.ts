import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../lib/files.js';

/**
 * The record of an explicit stop of k3s (`fleetlet k3s stop`, a `k3s.stop` command). A restart of fleetlet never
 * stops k3s, so this is the only way k3s stays down: while the file exists no fleetlet starts k3s, this one or the
 * next (it survives a reboot too). `fleetlet k3s start` or a `k3s.restart` command removes it.
 *
 * Whoever writes it sends the one SIGTERM; the supervisor only refrains from starting k3s again, so a stop asked
 * from outside never meets a second SIGTERM from the agent (k3s exits 1 on a second one).
 */
export const HOLD_FILE = 'agent-held';

export interface Hold {
  by: string;
  at: number;
}

export function isHeld(workDir: string): boolean {
  return existsSync(join(workDir, HOLD_FILE));
}

/** Durable before anyone signals k3s: a power cut after the SIGTERM must not start k3s again at boot. */
export async function writeHold(workDir: string, by: string, now = Date.now()): Promise<void> {
  const hold: Hold = { by: by.slice(0, 200), at: now };
  await writeFileAtomic(join(workDir, HOLD_FILE), `${JSON.stringify(hold)}\n`, { mode: 0o600 });
}

/** Returns whether there was a hold to remove. */
export async function clearHold(workDir: string): Promise<boolean> {
  if (!isHeld(workDir)) return false;
  await rm(join(workDir, HOLD_FILE), { force: true });
  await fsyncDir(workDir);
  return true;
}
