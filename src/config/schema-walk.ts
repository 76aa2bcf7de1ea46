import type { z } from 'zod';

/**
 * Reads the structure of a zod schema, so that env var names, "did you mean" hints and docs follow the schema
 * instead of a hand-kept list.
 */
export type LeafKind = 'string' | 'number' | 'boolean' | 'list' | 'map' | 'other';

export interface Leaf {
  path: string[];
  kind: LeafKind;
  schema: z.ZodType;
}

interface Def {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  options?: z.ZodType[];
}

const defOf = (schema: z.ZodType): Def => (schema as unknown as { _zod: { def: Def } })._zod.def;

/** Strips optional/default/prefault/transform wrappers down to the schema that says what the value is. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  for (;;) {
    const def = defOf(current);
    if (def.innerType && ['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch'].includes(def.type)) {
      current = def.innerType;
    } else if (def.type === 'pipe' && def.in) {
      current = def.in;
    } else {
      return current;
    }
  }
}

export function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  const def = defOf(unwrap(schema));
  return def.type === 'object' ? def.shape : undefined;
}

export function kindOf(schema: z.ZodType): LeafKind {
  const def = defOf(unwrap(schema));
  switch (def.type) {
    case 'string':
    case 'enum':
    case 'literal':
      return 'string';
    case 'number':
    case 'int':
    case 'bigint':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'array':
      return 'list';
    case 'record':
      return 'map';
    case 'union':
      return def.options?.every((o) => kindOf(o) === 'string') ? 'string' : 'other';
    default:
      return 'other';
  }
}

export function leaves(schema: z.ZodType, prefix: string[] = []): Leaf[] {
  const shape = objectShape(schema);
  if (!shape) return [{ path: prefix, kind: kindOf(schema), schema }];
  return Object.entries(shape).flatMap(([key, child]) => leaves(child, [...prefix, key]));
}

/** The schema at a key path, or undefined when the path leaves the schema. */
export function schemaAt(schema: z.ZodType, path: readonly (string | number)[]): z.ZodType | undefined {
  let current: z.ZodType | undefined = schema;
  for (const key of path) {
    if (!current) return undefined;
    current = objectShape(current)?.[String(key)];
  }
  return current;
}

/** Closest candidate by edit distance, when it is close enough to be a plausible typo. */
export function didYouMean(word: string, candidates: readonly string[] | Iterable<string>): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  if (!best) return undefined;
  // A longer name typed half-way ("intervall" for "intervalSeconds") is far in edits but plainly meant.
  const stem = word.toLowerCase().slice(0, Math.max(4, word.length - 2));
  const byPrefix = [...candidates].find((candidate) => candidate.toLowerCase().startsWith(stem));
  if (byPrefix && best.distance > 2) return byPrefix;
  return best.distance <= Math.max(2, Math.floor(best.candidate.length / 3)) ? best.candidate : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}
