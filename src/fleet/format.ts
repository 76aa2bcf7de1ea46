import type { CommandResult } from '../protocol/result.js';

/** One line per result, for people reading a terminal. */
export function formatResult(result: CommandResult): string {
  const head = `${new Date(result.at).toISOString()}  ${result.deviceId}  ${result.commandId ?? '-'}  ${result.status}`;
  switch (result.status) {
    case 'rejected':
      return `${head} (${result.reason}): ${result.detail}`;
    case 'failed':
      return `${head} (${result.reason}): ${result.detail}`;
    case 'progress':
      return `${head} ${result.step}${result.detail ? `: ${result.detail}` : ''}`;
    case 'succeeded':
      return `${head}${result.detail ? `: ${result.detail}` : ''}`;
    default:
      return head;
  }
}

/** Left-aligned columns, widths from the content. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
