import type { z } from 'zod';
import type { ConfigProblem } from '../lib/errors.js';
import { originOf } from './layer.js';
import { SECRET_PATHS } from './schema.js';
import { didYouMean, objectShape, schemaAt } from './schema-walk.js';

/** Turns zod's issues into problems that name the key, where its value came from, and what was expected. */
export function problemsFromIssues(
  issues: readonly z.core.$ZodIssue[],
  origins: Map<string, string>,
  schema: z.ZodType,
): ConfigProblem[] {
  return issues.flatMap((issue) => {
    const path = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      const known = Object.keys(objectShape(schemaAt(schema, path) ?? schema) ?? {});
      return issue.keys.map((key) => {
        const hint = didYouMean(key, known);
        const keyPath = [...path, key];
        return {
          path: keyPath.join('.'),
          source: originOf(origins, keyPath) ?? 'not set',
          message: `unknown key${hint ? `; did you mean "${hint}"?` : `; expected one of: ${known.join(', ')}`}`,
        };
      });
    }
    return [{ path: path.join('.'), source: originOf(origins, path) ?? 'not set', message: describe(issue, path) }];
  });
}

function describe(issue: z.core.$ZodIssue, path: string[]): string {
  const input = (issue as { input?: unknown }).input;
  const secret = (SECRET_PATHS as readonly string[]).includes(path.join('.'));
  const got = input === undefined || secret ? '' : `, got ${preview(input)}`;
  switch (issue.code) {
    case 'invalid_type':
      if (input === undefined) return `required: expected ${article(issue.expected)}, but it is not set`;
      return `expected ${article(issue.expected)}${got}`;
    case 'too_small':
    case 'too_big': {
      // A message the schema wrote itself says more than the generic bound.
      if (!/^Too (small|big)/.test(issue.message)) return `${issue.message}${got}`;
      const bound = Number(issue.code === 'too_small' ? issue.minimum : issue.maximum);
      const word = issue.code === 'too_small' ? 'at least' : 'at most';
      const unit = issue.origin === 'array' ? ' items' : issue.origin === 'string' ? ' characters' : '';
      return `expected ${word} ${bound}${unit}${got}`;
    }
    case 'invalid_value':
      return `expected one of: ${issue.values.map((v) => String(v)).join(', ')}${got}`;
    case 'invalid_union':
      return `expected ${path.at(-2)?.toLowerCase().includes('ip') ? 'an IPv4 or IPv6 address' : 'a valid value'}${got}`;
    default:
      return `${issue.message}${got}`;
  }
}

function article(type: string): string {
  const names: Record<string, string> = { object: 'a mapping', array: 'a list', int: 'an integer', record: 'a mapping' };
  return names[type] ?? (/^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);
}

function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
