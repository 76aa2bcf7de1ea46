import { describe, expect, it } from 'vitest';
import { formatResult, printable, printableJson, table } from '../../src/fleet/format.js';

describe('printable: device strings made safe for a terminal', () => {
  it('escapes C0, DEL, C1 and the bidi overrides and isolates, and leaves other text alone', () => {
    expect(printable('a\u001b[2Jb\u0007c\r\n\t')).toBe('a\\x1b[2Jb\\x07c\\x0d\\x0a\\x09');
    expect(printable('\u007f\u0080\u009b\u009f')).toBe('\\x7f\\x80\\x9b\\x9f');
    expect(printable('\u202a\u202e\u2066\u2069')).toBe('\\u202a\\u202e\\u2066\\u2069');
    expect(printable('pi-kitchen-01 Küche 温度 \u00a0 \u2067x')).toBe('pi-kitchen-01 Küche 温度 \u00a0 \\u2067x');
  });

  it('keeps JSON valid and equal in value while escaping what JSON.stringify leaves raw', () => {
    const value = { s: 'a\u001b\u007f\u0085\u202eb' };
    const json = printableJson(JSON.stringify(value));
    // eslint-disable-next-line no-control-regex -- looking for control characters is the test
    expect(json).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    expect(JSON.parse(json)).toEqual(value);
  });

  it('is used by the result line and the table', () => {
    const line = formatResult({ schemaVersion: 1, commandId: 'c-1', deviceId: 'pi-1', type: 'ping', at: 0, status: 'succeeded', detail: 'x\u001b]0;t\u0007' });
    expect(line).toContain('succeeded: x\\x1b]0;t\\x07');
    expect(table(['A', 'B'], [['\u202eab', 'c']])).toBe('A         B\n\\u202eab  c\n');
  });
});
