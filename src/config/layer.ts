import type { ConfigProblem } from '../lib/errors.js';

/**
 * One source of configuration values (a YAML file, the environment, command-line flags), with where each value
 * came from, so that a problem can name "config.yaml:12" or "env FLEETLET_BROKER_URL" instead of just a key.
 */
export interface Layer {
  values: Record<string, unknown>;
  /** dotted key path -> human-readable origin */
  origins: Map<string, string>;
  problems: ConfigProblem[];
  /** The source could not be read whole (malformed YAML): checking the merged result would only add noise. */
  incomplete?: boolean;
}

export const emptyLayer = (): Layer => ({ values: {}, origins: new Map(), problems: [] });

export const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

export function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (!isPlainObject(node[key])) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

export function getPath(source: unknown, path: readonly string[]): unknown {
  let node = source;
  for (const key of path) {
    if (!isPlainObject(node)) return undefined;
    node = node[key];
  }
  return node;
}

/** Later layers win; maps merge key by key, lists and scalars replace whole. */
export function mergeLayers(layers: Layer[]): Layer {
  const merged = emptyLayer();
  for (const layer of layers) {
    merged.values = mergeValues(merged.values, layer.values) as Record<string, unknown>;
    for (const [path, origin] of layer.origins) {
      if (!isPlainObject(getPath(layer.values, path.split('.')))) {
        // A replaced list or scalar takes its old items' origins with it.
        for (const old of [...merged.origins.keys()]) if (old.startsWith(`${path}.`)) merged.origins.delete(old);
      }
      merged.origins.set(path, origin);
    }
    merged.problems.push(...layer.problems);
    if (layer.incomplete) merged.incomplete = true;
  }
  return merged;
}

function mergeValues(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  const result: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) result[key] = mergeValues(base[key], value);
  return result;
}

/** The origin of the value at `path`, or of its closest ancestor that has one. */
export function originOf(origins: Map<string, string>, path: readonly (string | number)[]): string | undefined {
  for (let length = path.length; length > 0; length--) {
    const origin = origins.get(path.slice(0, length).join('.'));
    if (origin) return origin;
  }
  return undefined;
}
