import { isUtf8 } from 'node:buffer';

/**
 * Strict JSON for signed payloads. JSON.parse alone is too lenient for them: it replaces bad UTF-8 with U+FFFD,
 * keeps the last of two equal keys, turns 1e400 into Infinity and accepts lone surrogates, so two different
 * payloads could carry one signature, and another parser could read a different command from the same bytes.
 * `__proto__`, `constructor` and `prototype` keys are refused too: they mean something to JavaScript objects.
 *
 * A hand-written scanner rather than a library: the small parsers that detect duplicate keys do not also refuse
 * lone surrogates and overflowing numbers, and this one is short. It runs after JSON.parse accepted the text, so it
 * may rely on the grammar being valid; it is iterative (no recursion), so nesting depth cannot overflow the stack,
 * and linear in the input, which the caller has already capped in size.
 */

export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export type StrictJson = { ok: true; value: unknown } | { ok: false; problem: string };

type Frame = { kind: 'object'; keys: Set<string>; expectKey: boolean; key: string } | { kind: 'array'; index: number };

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

export function parseStrictJson(bytes: Uint8Array): StrictJson {
  if (!isUtf8(bytes)) return { ok: false, problem: 'not UTF-8' };
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'not JSON' };
  }
  const problem = findProblem(text);
  return problem === null ? { ok: true, value } : { ok: false, problem };
}

/** The first thing about valid JSON text that makes it ambiguous, or null. */
function findProblem(text: string): string | null {
  const stack: Frame[] = [];
  let i = 0;
  while (i < text.length) {
    const char = text[i]!;
    const top = stack.at(-1);
    if (char === '{') {
      stack.push({ kind: 'object', keys: new Set(), expectKey: true, key: '' });
      i += 1;
    } else if (char === '[') {
      stack.push({ kind: 'array', index: 0 });
      i += 1;
    } else if (char === '}' || char === ']') {
      stack.pop();
      i += 1;
    } else if (char === ',') {
      if (top?.kind === 'object') top.expectKey = true;
      else if (top?.kind === 'array') top.index += 1;
      i += 1;
    } else if (char === '"') {
      const end = stringEnd(text, i);
      const decoded = JSON.parse(text.slice(i, end)) as string;
      if (hasLoneSurrogate(decoded)) return `lone surrogate in a string at ${pathOf(stack)}`;
      if (top?.kind === 'object' && top.expectKey) {
        const where = pathOf(stack.slice(0, -1)) || '(root)';
        if (FORBIDDEN_KEYS.has(decoded)) return `forbidden key ${quoted(decoded)} at ${where}`;
        if (top.keys.has(decoded)) return `duplicate key ${quoted(decoded)} at ${where}`;
        top.keys.add(decoded);
        top.expectKey = false;
        top.key = decoded;
      }
      i = end;
    } else if (char === '-' || (char >= '0' && char <= '9')) {
      const end = numberEnd(text, i);
      if (!Number.isFinite(Number(text.slice(i, end)))) return `number out of range at ${pathOf(stack)}`;
      i = end;
    } else {
      i += 1; // whitespace, ':' and the letters of true, false, null
    }
  }
  return null;
}

// Keys and paths come from the sender and end up in logs and results: quoted, escaped and cut short.
const MAX_KEY_CHARS = 40;
const MAX_PATH_CHARS = 120;

function quoted(key: string): string {
  return JSON.stringify(key.length > MAX_KEY_CHARS ? `${key.slice(0, MAX_KEY_CHARS)}…` : key);
}

function pathOf(stack: readonly Frame[]): string {
  const path = stack
    .map((frame) => (frame.kind === 'array' ? `[${frame.index}]` : /^[A-Za-z0-9_$-]{1,40}$/.test(frame.key) ? `.${frame.key}` : `[${quoted(frame.key)}]`))
    .join('')
    .replace(/^\./, '');
  return path.length > MAX_PATH_CHARS ? `…${path.slice(-MAX_PATH_CHARS)}` : path;
}

function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
  return i + 1;
}

function numberEnd(text: string, start: number): number {
  let i = start;
  while (i < text.length && '+-.eE0123456789'.includes(text[i]!)) i += 1;
  return i;
}
