import { FleetletError } from '../lib/errors.js';
import { hasLoneSurrogate } from './strict-json.js';

/** A value that has no canonical JSON form (NaN, a lone surrogate, a Date...); a bug of the sender, never retried. */
export class CanonicalJsonError extends FleetletError {
  readonly severity = 'fatal';
}

/**
 * The JSON Canonicalization Scheme (RFC 8785) for the values a command can hold: object keys sorted by UTF-16 code
 * units, no whitespace, strings and numbers as ECMAScript's JSON.stringify writes them (which is what RFC 8785
 * specifies: shortest round-trip numbers, `\u00xx` lowercase for control characters, everything else as is).
 * What RFC 8785 forbids is refused rather than written some other way: non-finite numbers and lone surrogates
 * (I-JSON). Object members whose value is undefined are left out, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new CanonicalJsonError(`${value} has no JSON form`);
    return JSON.stringify(value);
  }
  if (typeof value === 'string') {
    if (hasLoneSurrogate(value)) throw new CanonicalJsonError('a string holds a lone surrogate, which is not Unicode');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && isPlainObject(value)) {
    const record = value as Record<string, unknown>;
    const members = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort()
      .map((key) => `${canonicalJson(key)}:${canonicalJson(record[key])}`);
    return `{${members.join(',')}}`;
  }
  throw new CanonicalJsonError(`a ${describe(value)} has no JSON form`);
}

function isPlainObject(value: object): boolean {
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}

function describe(value: unknown): string {
  if (typeof value !== 'object' || value === null) return typeof value;
  return (value.constructor as { name?: string } | undefined)?.name ?? 'object';
}
