import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { OperatorProfileError } from './errors.js';

const MAX_PROFILE_BYTES = 64 * 1024;
const fileName = z.string().min(1).max(4096);

/**
 * The operator's settings, so that broker, TLS files and key are not typed at every command. Flags and FLEET_*
 * variables win over it. Relative file names are taken from the profile's own directory.
 */
export const OperatorProfileSchema = z.strictObject({
  /** Broker URL, e.g. mqtts://broker.example.net:8883. */
  broker: z.string().min(1).max(2048).optional(),
  topicRoot: z.string().min(1).max(256).optional(),
  username: z.string().min(1).max(256).optional(),
  /** File holding the MQTT password; the password itself never goes in the profile. */
  passwordFile: fileName.optional(),
  caFile: fileName.optional(),
  certFile: fileName.optional(),
  /** The TLS client certificate's key. */
  keyFile: fileName.optional(),
  /** The operator's Ed25519 signing key (`fleet keygen`), mode 0600. */
  signingKey: fileName.optional(),
  keyId: z.string().min(1).max(128).optional(),
  /** A fleetlet hub to read devices and watch from, instead of the broker. */
  hub: z.strictObject({ url: z.string().min(1).max(2048), tokenFile: fileName.optional() }).optional(),
});

export type OperatorProfile = z.infer<typeof OperatorProfileSchema>;

const FILE_KEYS = ['passwordFile', 'caFile', 'certFile', 'keyFile', 'signingKey'] as const;

/** `$FLEET_PROFILE`, else `$XDG_CONFIG_HOME/fleetlet/operator.yaml`, else `~/.config/fleetlet/operator.yaml`. */
export function operatorProfilePath(env: Record<string, string | undefined>): string | undefined {
  if (env.FLEET_PROFILE) return env.FLEET_PROFILE;
  const configHome = env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : env.HOME ? join(env.HOME, '.config') : undefined;
  return configHome ? join(configHome, 'fleetlet', 'operator.yaml') : undefined;
}

/** The profile at `path` with its file names made absolute; an absent file is an empty profile. */
export function loadOperatorProfile(path: string | undefined, mustExist = false): OperatorProfile {
  if (!path) return {};
  let size: number;
  try {
    size = statSync(path).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !mustExist) return {};
    throw new OperatorProfileError(`operator profile ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (size > MAX_PROFILE_BYTES) throw new OperatorProfileError(`operator profile ${path}: ${size} bytes, more than ${MAX_PROFILE_BYTES}`);
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'), { uniqueKeys: true }) ?? {};
  } catch (err) {
    throw new OperatorProfileError(`operator profile ${path}: malformed YAML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  const checked = OperatorProfileSchema.safeParse(raw);
  if (!checked.success) {
    const problems = checked.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new OperatorProfileError(`operator profile ${path}: ${problems.join('; ')}`);
  }
  const profile = { ...checked.data };
  const base = dirname(path);
  for (const key of FILE_KEYS) {
    const value = profile[key];
    if (value !== undefined) profile[key] = resolve(base, value);
  }
  if (profile.hub?.tokenFile) profile.hub = { ...profile.hub, tokenFile: resolve(base, profile.hub.tokenFile) };
  return profile;
}
