import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConfigError, type ConfigProblem, errorReason } from '../lib/errors.js';
import { isPlaintextBrokerUrl } from '../protocol/broker-url.js';
import { envLayer } from './env-layer.js';
import { flagLayer } from './flag-layer.js';
import { problemsFromIssues } from './issues.js';
import { emptyLayer, mergeLayers, type Layer } from './layer.js';
import { ConfigSchema, isPlainHttp, type Config } from './schema.js';
import { resolveFiles } from './secret-files.js';
import { MAX_CONFIG_FILE_BYTES, yamlLayer } from './yaml-layer.js';

export const DEFAULT_CONFIG_PATH = '/etc/fleetlet/config.yaml';

export interface LoadConfigOptions {
  /** Main config file; `explicit` when the user named it (then it must exist). */
  path: string;
  explicit: boolean;
  env: Record<string, string | undefined>;
  /** `--set key=value` assignments */
  sets?: readonly string[];
  /** Where the files the config names are read from: "/" on the device, the image's root for a mounted image. */
  fileRoot?: string;
}

export interface LoadedConfig {
  config: Config;
  warnings: string[];
  /** The files that were read, in order. */
  files: string[];
}

/**
 * Builds the configuration from, lowest to highest: built-in defaults, the YAML file, its config.d/*.yaml drop-ins
 * (alphabetical), FLEETLET_* environment variables, and --set flags. Every problem is collected before failing,
 * so a person fixes a config in one pass. Throws ConfigError.
 */
export function loadConfig(options: LoadConfigOptions): LoadedConfig {
  const files = configFiles(options.path);
  const problems: ConfigProblem[] = [];
  if (!existsSync(options.path) && files.length === 0 && options.explicit) {
    problems.push({ path: '', source: options.path, message: 'config file not found' });
  }
  const layers: Layer[] = files.map(readFileLayer);
  layers.push(envLayer(options.env, ConfigSchema), flagLayer(options.sets ?? [], ConfigSchema));
  const merged = mergeLayers(layers);
  problems.push(...merged.problems);

  const { problems: fileProblems, warnings } = resolveFiles(merged, ConfigSchema, options.fileRoot);
  problems.push(...fileProblems);

  if (merged.incomplete) throw new ConfigError(dedupe(problems));
  const result = ConfigSchema.safeParse(merged.values, { reportInput: true });
  if (!result.success) problems.push(...problemsFromIssues(result.error.issues, merged.origins, ConfigSchema));
  if (problems.length > 0 || !result.success) throw new ConfigError(dedupe(problems));

  const config = result.data;
  // Allowed (broker.allowPlaintext, checked by the schema), but worth saying at every start.
  if (isPlaintextBrokerUrl(config.broker.url)) warnings.push('broker.url uses plain mqtt://: reports and commands cross the network unencrypted');
  const insecureMirrors = (['channelUrl', 'artifactUrl'] as const).filter((key) => isPlainHttp(config.k3s[key]));
  if (insecureMirrors.length > 0) {
    warnings.push(
      `${insecureMirrors.map((key) => `k3s.${key}`).join(' and ')} ${insecureMirrors.length === 1 ? 'uses' : 'use'} plain http:// (k3s.allowInsecureMirror): anyone on the path to the mirror can choose the k3s binary that runs as root`,
    );
  }
  return { config, warnings, files };
}

function configFiles(mainPath: string): string[] {
  const files = existsSync(mainPath) ? [mainPath] : [];
  const dropInDir = join(dirname(mainPath), 'config.d');
  if (existsSync(dropInDir) && statSync(dropInDir).isDirectory()) {
    const dropIns = readdirSync(dropInDir)
      .filter((name) => /\.ya?ml$/i.test(name))
      .sort()
      .map((name) => join(dropInDir, name));
    files.push(...dropIns);
  }
  return files;
}

function readFileLayer(file: string): Layer {
  try {
    if (statSync(file).size > MAX_CONFIG_FILE_BYTES) {
      const layer: Layer = { ...emptyLayer(), incomplete: true };
      layer.problems.push({ path: '', source: file, message: `file is larger than ${MAX_CONFIG_FILE_BYTES} bytes` });
      return layer;
    }
    return yamlLayer(file, readFileSync(file, 'utf8'));
  } catch (err) {
    const layer: Layer = { ...emptyLayer(), incomplete: true };
    layer.problems.push({ path: '', source: file, message: `cannot read: ${errorReason(err)}` });
    return layer;
  }
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.path}|${p.source}|${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
