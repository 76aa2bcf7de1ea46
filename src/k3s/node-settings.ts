import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { FleetletError } from '../lib/errors.js';
import { writeFileAtomic } from '../lib/files.js';
import { Secret } from '../lib/secret.js';
import { HttpsUrlSchema } from '../protocol/command.js';
import type { K3sConfig } from './args.js';

/**
 * Node settings changed by operators' commands after install (labels, taints, server, join token). They override
 * the config file on the next start of k3s and survive fleetlet restarts; the previous set is kept so that a
 * change that leaves k3s unhealthy can be put back. The files hold the join token: 0600.
 */
export const NodeSettingsSchema = z.strictObject({
  // Only bounds for labels and taints: the command checked their syntax, and a file an older fleetlet wrote under a
  // looser rule must still load (an invalid file loads as no settings at all, join token and server included).
  labels: z.record(z.string().max(317), z.string().max(63)).optional(),
  taints: z.array(z.string().max(400)).max(64).optional(),
  serverUrl: HttpsUrlSchema.optional(),
  joinToken: z.string().min(1).max(4096).optional(),
});
export type NodeSettings = z.infer<typeof NodeSettingsSchema>;

/**
 * The settings as they were before one command changed them, tagged with that command's id. Written (durably)
 * before the settings file, and never rewritten by the same command: a run resumed after a crash finds it and
 * cannot mistake its own half-applied change for the settings to go back to.
 */
const PreviousSettingsSchema = z.strictObject({ commandId: z.string().min(1).max(256), settings: NodeSettingsSchema });

const MAX_FILE_BYTES = 64 * 1024;

/** There is no kept copy of the settings from before this command: nothing to revert to, so nothing is written. */
export class NodeSettingsRevertError extends FleetletError {
  readonly severity = 'fatal';
  constructor(commandId: string, previousFile: string) {
    super(`no settings from before command ${commandId} in ${previousFile}; the node settings were left as they are`);
  }
}

export class NodeSettingsFile {
  constructor(private readonly file: string) {}

  private get previousFile(): string {
    return `${this.file}.previous`;
  }

  load(): NodeSettings {
    return readSettings(this.file);
  }

  /**
   * Merges `changes` into the settings as they were before command `commandId`, keeping those for revert().
   * Idempotent per command id: a second call for the same command (a resumed run) gives the same result.
   */
  async apply(commandId: string, changes: NodeSettings): Promise<void> {
    const valid = NodeSettingsSchema.parse(changes); // before anything is written: a bad change leaves both files
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    this.sweepTemps();
    let previous = this.previousOf(commandId);
    if (!previous) {
      previous = this.load();
      await writeFileAtomic(this.previousFile, JSON.stringify({ commandId, settings: previous }), { mode: 0o600 });
    }
    await writeFileAtomic(this.file, JSON.stringify({ ...previous, ...valid }), { mode: 0o600 });
  }

  /**
   * Puts back the settings command `commandId` changed. Idempotent: the kept copy stays until the next command's
   * apply replaces it, so a revert repeated after a crash writes the same settings again.
   */
  async revert(commandId: string): Promise<void> {
    const previous = this.previousOf(commandId);
    if (!previous) throw new NodeSettingsRevertError(commandId, this.previousFile);
    await writeFileAtomic(this.file, JSON.stringify(previous), { mode: 0o600 });
  }

  private previousOf(commandId: string): NodeSettings | undefined {
    const kept = PreviousSettingsSchema.safeParse(readJson(this.previousFile));
    return kept.success && kept.data.commandId === commandId ? kept.data.settings : undefined;
  }

  /** Temp files a crash left mid-write hold a join token: none may linger. */
  private sweepTemps(): void {
    const dir = dirname(this.file);
    const prefix = `.${basename(this.file)}`;
    for (const name of readdirSync(dir)) {
      if (name.startsWith(prefix) && name.includes('.tmp-')) rmSync(join(dir, name), { force: true });
    }
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
  const parsed = NodeSettingsSchema.safeParse(readJson(file));
  return parsed.success ? parsed.data : {};
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8').slice(0, MAX_FILE_BYTES));
  } catch {
    return undefined;
  }
}
