import type { z } from 'zod';
import { emptyLayer, setPath, type Layer } from './layer.js';
import { envName, parseTextValue } from './env-layer.js';
import { SECRET_PATHS } from './schema.js';
import { didYouMean, kindOf, objectShape, schemaAt } from './schema-walk.js';

/** `--set key.path=value` flags, the highest-precedence source. A map may be reached into: device.labels.site=x. */
export function flagLayer(assignments: readonly string[], schema: z.ZodType): Layer {
  const layer = emptyLayer();
  for (const assignment of assignments) {
    const source = `flag --set ${assignment.split('=')[0]}`;
    const eq = assignment.indexOf('=');
    if (eq <= 0) {
      layer.problems.push({ path: '', source, message: 'expected --set key.path=value' });
      continue;
    }
    const path = assignment.slice(0, eq).split('.');
    const secret = refuseSecret(path);
    if (secret) {
      layer.problems.push({ path: path.join('.'), source, message: secret });
      continue;
    }
    const target = resolveTarget(schema, path);
    if (!target.ok) {
      layer.problems.push({ path: path.join('.'), source, message: target.message });
      continue;
    }
    const parsed = parseTextValue(assignment.slice(eq + 1), target.kind);
    if (!parsed.ok) {
      layer.problems.push({ path: path.join('.'), source, message: parsed.message });
      continue;
    }
    setPath(layer.values, path, parsed.value);
    layer.origins.set(path.join('.'), source);
  }
  return layer;
}

/** A secret on the command line is in `ps` and /proc/<pid>/cmdline for every user of the machine to read. */
function refuseSecret(path: string[]): string | undefined {
  const key = path.join('.');
  if (!(SECRET_PATHS as readonly string[]).includes(key)) return undefined;
  return `${key} is a secret and --set would show it to every user in ps; give it in ${key}File (mode 0600) or the environment variable ${envName(path)}`;
}

type Target = { ok: true; kind: ReturnType<typeof kindOf> } | { ok: false; message: string };

function resolveTarget(schema: z.ZodType, path: string[]): Target {
  for (let depth = 0; depth < path.length; depth++) {
    const parent = schemaAt(schema, path.slice(0, depth));
    const shape = parent && objectShape(parent);
    if (!parent) break;
    if (!shape) {
      // Reaching into a map (labels): the rest of the path is one key whose value is a string.
      return kindOf(parent) === 'map' && depth === path.length - 1
        ? { ok: true, kind: 'string' }
        : { ok: false, message: 'not a configuration key' };
    }
    const key = path[depth]!;
    if (!(key in shape)) {
      const hint = didYouMean(key, Object.keys(shape));
      return { ok: false, message: `unknown key "${key}"${hint ? `; did you mean "${hint}"?` : ''}` };
    }
  }
  const leaf = schemaAt(schema, path);
  if (!leaf || objectShape(leaf)) return { ok: false, message: 'expected a key that holds a value, not a section' };
  return { ok: true, kind: kindOf(leaf) };
}
