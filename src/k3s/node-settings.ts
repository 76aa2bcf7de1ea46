import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { Secret } from '../lib/secret.js';
import type { K3sConfig } from './args.js';

/**
 * Node settings changed by operators' commands after install (labels, taints, server, join token). They override
 * the config file on the next start of k3s and survive fleetlet restarts; the previous set is kept so that a
 * change that leaves k3s unhealthy can be put back. The file holds the join token: 0600.
 */
export const NodeSettingsSchema = z.strictObject({
  labels: z.record(z.string().max(317), z.string().max(63)).optional(),
  taints: z.array(z.string().max(400)).max(64).optional(),
  serverUrl: z.string().startsWith('https://').max(2048).optional(),
  joinToken: z.string().min(1).max(4096).optional(),
});
export type NodeSettings = z.infer<typeof NodeSettingsSchema>;

export class NodeSettingsFile {
  constructor(private readonly file: string) {}

  load(): NodeSettings {
    return readSettings(this.file);
  }

  /** Merges `changes` into the current settings, keeping the current ones for revert(). */
  apply(changes: NodeSettings): void {
    const valid = NodeSettingsSchema.parse(changes); // before anything is written: a bad change leaves both files
    const current = this.load();
    writeSettings(`${this.file}.previous`, current);
    writeSettings(this.file, { ...current, ...valid });
  }

  revert(): void {
    const previous = readSettings(`${this.file}.previous`);
    writeSettings(this.file, previous);
    rmSync(`${this.file}.previous`, { force: true });
  }
}

/** The k3s config with the operator's settings laid over it. */
export function withNodeSettings(k3s: K3sConfig, settings: NodeSettings): K3sConfig {
  return {
    ...k3s,
    ...(settings.labels ? { nodeLabels: settings.labels } : {}),
    ...(settings.taints ? { nodeTaints: settings.taints } : {}),
    ...(settings.serverUrl ? { serverUrl: settings.serverUrl } : {}),
    ...(settings.joinToken ? { token: new Secret(settings.joinToken), tokenFile: undefined } : {}),
  };
}

function readSettings(file: string): NodeSettings {
  try {
    const parsed = NodeSettingsSchema.safeParse(JSON.parse(readFileSync(file, 'utf8').slice(0, 64 * 1024)));
    return parsed.success ? parsed.data : {};
  } catch {
    return {};
  }
}

function writeSettings(file: string, settings: NodeSettings): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(`${file}.tmp`, JSON.stringify(settings), { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}
