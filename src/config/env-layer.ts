import type { z } from 'zod';
import { emptyLayer, setPath, type Layer } from './layer.js';
import { didYouMean, leaves, type LeafKind } from './schema-walk.js';

export const ENV_PREFIX = 'FLEETLET_';
/** FLEETLET_ variables that are not config keys. */
export const RESERVED_ENV = new Set(['FLEETLET_CONFIG']);

/** broker.tls.caFile -> FLEETLET_BROKER_TLS_CA_FILE */
export function envName(path: readonly string[]): string {
  return ENV_PREFIX + path.map((part) => part.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/** The FLEETLET_* variables, named after the schema's keys, as a layer. Unknown FLEETLET_* names are problems. */
export function envLayer(env: Record<string, string | undefined>, schema: z.ZodType): Layer {
  const layer = emptyLayer();
  const byName = new Map(leaves(schema).map((leaf) => [envName(leaf.path), leaf]));
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || RESERVED_ENV.has(name) || raw === undefined) continue;
    const source = `env ${name}`;
    const leaf = byName.get(name);
    if (!leaf) {
      const hint = didYouMean(name, byName.keys());
      layer.problems.push({ path: '', source, message: `unknown variable${hint ? `; did you mean ${hint}?` : ''}` });
      continue;
    }
    const parsed = parseTextValue(raw, leaf.kind);
    if (!parsed.ok) {
      layer.problems.push({ path: leaf.path.join('.'), source, message: parsed.message });
      continue;
    }
    setPath(layer.values, leaf.path, parsed.value);
    layer.origins.set(leaf.path.join('.'), source);
  }
  return layer;
}

export type ParsedText = { ok: true; value: unknown } | { ok: false; message: string };

/**
 * Turns the text of an env var or a --set flag into the kind of value the schema expects there. Text that does not
 * fit is passed on unchanged so that the schema reports it with its own expectation.
 */
export function parseTextValue(raw: string, kind: LeafKind): ParsedText {
  const text = raw.trim();
  switch (kind) {
    case 'number':
      return { ok: true, value: /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : raw };
    case 'boolean':
      if (/^(true|1|yes|on)$/i.test(text)) return { ok: true, value: true };
      if (/^(false|0|no|off)$/i.test(text)) return { ok: true, value: false };
      return { ok: true, value: raw };
    case 'list':
      if (text.startsWith('[')) return parseJson(text, 'a JSON list like ["a","b"]');
      return { ok: true, value: text === '' ? [] : text.split(',').map((item) => item.trim()) };
    case 'map':
      return parseJson(text === '' ? '{}' : text, 'a JSON object like {"key":"value"}');
    default:
      return { ok: true, value: raw };
  }
}

function parseJson(text: string, expected: string): ParsedText {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, message: `expected ${expected}, got ${JSON.stringify(text.slice(0, 60))}` };
  }
}
