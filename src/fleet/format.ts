import type { CommandResult } from '../protocol/result.js';

/**
 * Characters a device could use to drive the operator's terminal: C0 controls (escape sequences, carriage
 * returns that overwrite a line), DEL, C1 controls (a one-byte CSI) and the bidi overrides and isolates that make
 * text read differently from what it is. Device ids, names, labels, versions, details and log lines all come
 * from devices, so every printer passes them through `printable`.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
/** The same set minus C0, which JSON.stringify escapes already. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function escaped(char: string): string {
  const code = char.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** Text with every terminal-controlling character shown as an escape (`\x1b`, `\u202e`): safe to print. */
export function printable(text: string): string {
  return text.replace(UNSAFE, escaped);
}

/** JSON text with the characters JSON.stringify leaves raw (DEL, C1, bidi) written as \u escapes: the same value. */
export function printableJson(json: string): string {
  return json.replace(UNSAFE_IN_JSON, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** One line per result, for people reading a terminal. */
export function formatResult(result: CommandResult): string {
  const head = `${new Date(result.at).toISOString()}  ${result.deviceId}  ${result.commandId ?? '-'}  ${result.status}`;
  switch (result.status) {
    case 'rejected':
      return printable(`${head} (${result.reason}): ${result.detail}`);
    case 'failed':
      return printable(`${head} (${result.reason}): ${result.detail}`);
    case 'progress':
      return printable(`${head} ${result.step}${result.detail ? `: ${result.detail}` : ''}`);
    case 'succeeded':
      return printable(`${head}${result.detail ? `: ${result.detail}` : ''}`);
    default:
      return printable(head);
  }
}

/** Left-aligned columns, widths from the (escaped) content. */
export function table(header: string[], rows: string[][]): string {
  const safe = rows.map((row) => row.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...safe.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...safe.map(line)].join('\n') + '\n';
}
