import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { basename, join } from 'node:path';
import { parse } from 'yaml';
import { ConfigSchema, SECRET_FILE_PATHS, type Config } from '../config/schema.js';
import { leaves } from '../config/schema-walk.js';
import { releaseArtifacts, type K3sArch } from '../k3s/release.js';
import { ConfigError, UsageError } from '../lib/errors.js';
import { SYSTEMD_UNIT, UNIT_NAME } from './provision-unit.js';

export const BINARY_PATH = '/usr/local/bin/fleetlet';
export const CONFIG_PATH = '/etc/fleetlet/config.yaml';
export const TRUST_DIR = '/etc/fleetlet/trust';
export const UNIT_PATH = `/etc/systemd/system/${UNIT_NAME}`;
export const ENABLE_LINK = `/etc/systemd/system/multi-user.target.wants/${UNIT_NAME}`;
export const MANIFEST_PATH = '/etc/fleetlet/provision-manifest.json';

/** A config file or an input copied into the image is small; a larger one is a wrong file given by mistake. */
const MAX_INPUT_BYTES = 1024 * 1024;

/** One file provision writes into the image: from a file given to it, or from text it makes itself. */
export interface PlannedFile {
  path: string;
  mode: number;
  source: { file: string } | { text: string };
  /** Secret files (keys, tokens, passwords) are 0600 and never printed. */
  secret: boolean;
}

export interface PlanInputs {
  root: string;
  binary: string;
  config?: string;
  trustAnchors: string[];
  /** Files the config names, given to provision: config key (e.g. k3s.tokenFile) -> file to copy there. */
  files: Record<string, string>;
  enable: boolean;
}

export interface Plan {
  config?: Config;
  files: PlannedFile[];
  link?: { path: string; target: string };
}

export function planWrites(inputs: PlanInputs): Plan {
  const config = inputs.config ? readImageConfig(inputs.config) : undefined;
  const files: PlannedFile[] = [{ path: BINARY_PATH, mode: 0o755, source: { file: inputs.binary }, secret: false }];
  if (inputs.config) files.push({ path: CONFIG_PATH, mode: 0o640, source: { file: inputs.config }, secret: false });
  for (const anchor of inputs.trustAnchors) {
    files.push({ path: join(TRUST_DIR, basename(anchor)), mode: 0o644, source: { file: existingInput('--trust-anchor', anchor) }, secret: false });
  }
  const named = fileKeys(config);
  for (const [key, source] of Object.entries(inputs.files)) {
    const target = named.get(key);
    if (!named.has(key) && !fileKeys(undefined).has(key)) throw new UsageError(`--file ${key}: not a file key of the config (one of ${[...fileKeys(undefined).keys()].join(', ')})`);
    if (!target) throw new UsageError(`--file ${key}: the config sets no ${key}, so there is no place in the image to copy ${source} to`);
    const secret = (SECRET_FILE_PATHS as readonly string[]).includes(key);
    files.push({ path: target, mode: secret ? 0o600 : 0o644, source: { file: existingInput(`--file ${key}`, source) }, secret });
  }
  files.push({ path: UNIT_PATH, mode: 0o644, source: { text: SYSTEMD_UNIT }, secret: false });
  // What `systemctl enable` creates; absolute, so it resolves inside the booted device.
  return { config, files, ...(inputs.enable ? { link: { path: ENABLE_LINK, target: UNIT_PATH } } : {}) };
}

/**
 * Every file the config names (CA, client certificate and key, token and password files...) must be in the image
 * or written by this run; a device flashed without one fails in the field, where nobody can add it.
 */
export function missingFiles(root: string, plan: Plan): { key: string; path: string }[] {
  const written = new Set(plan.files.map((file) => file.path));
  return [...fileKeys(plan.config)]
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .filter(([, path]) => !written.has(path) && !existsSync(join(root, path)))
    .map(([key, path]) => ({ key, path }));
}

/** The paths an air-gap k3s adds: its binary, and the image archives the bundle holds. */
export function airgapPaths(source: string, arch: K3sArch, k3s: Config['k3s']): string[] {
  const artifacts = releaseArtifacts(arch);
  const names = statSync(source).isDirectory()
    ? readdirSync(source)
    : spawnSync('tar', ['-tf', source], { encoding: 'utf8', maxBuffer: 1024 * 1024 }).stdout.split('\n').map((name) => name.replace(/^\.\//, ''));
  const images = artifacts.imageNames.filter((name) => names.includes(name));
  return [k3s.binaryPath, ...images.map((name) => join(k3s.dataDir, 'agent/images', name))];
}

/** Every `*File` key of the config schema, with the path this config gives it (undefined when unset). */
function fileKeys(config: Config | undefined): Map<string, string | undefined> {
  const keys = new Map<string, string | undefined>();
  for (const leaf of leaves(ConfigSchema)) {
    const key = leaf.path.join('.');
    if (!key.endsWith('File')) continue;
    let value: unknown = config;
    for (const part of leaf.path) value = (value as Record<string, unknown> | undefined)?.[part];
    keys.set(key, typeof value === 'string' ? value : undefined);
  }
  return keys;
}

/** Validates the config against the schema; the files it names are checked in the image, not here. */
function readImageConfig(file: string): Config {
  const text = readFileSync(existingInput('--config', file), 'utf8');
  const result = ConfigSchema.safeParse(parse(text) ?? {});
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((issue) => ({ path: issue.path.join('.'), source: file, message: issue.message })));
  }
  if (result.data.device.id) {
    throw new ConfigError([{ path: 'device.id', source: file, message: 'an image must not name the device: each device derives its own id' }]);
  }
  return result.data;
}

function existingInput(flag: string, file: string): string {
  if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError(`${flag} ${file}: no such file`);
  if (statSync(file).size > MAX_INPUT_BYTES) throw new UsageError(`${flag} ${file}: larger than ${MAX_INPUT_BYTES} bytes`);
  return file;
}
