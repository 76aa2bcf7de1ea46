import { describe, expect, it } from 'vitest';
import { CanonicalJsonError, canonicalJson } from '../../src/protocol/canonical-json.js';
import { parseStrictJson } from '../../src/protocol/strict-json.js';

const canonicalOf = (text: string): string => {
  const parsed = parseStrictJson(Buffer.from(text, 'utf8'));
  if (!parsed.ok) throw new Error(parsed.problem);
  return canonicalJson(parsed.value);
};

describe('canonicalJson (RFC 8785)', () => {
  it('writes the example of RFC 8785 section 3.2.3 as the RFC does', () => {
    const input = String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`;
    expect(canonicalOf(input)).toBe(String.raw`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`);
  });

  it('sorts keys by UTF-16 code units, as RFC 8785 section 3.2.3 orders its example', () => {
    const keys = ['\u20ac', '\r', '\ufb33', '1', '\ud83d\ude00', '\u0080', '\u00f6'];
    const text = canonicalJson(Object.fromEntries(keys.map((key, i) => [key, i])));
    // U+1F600 sorts before U+FB33: its first UTF-16 unit is 0xD83D, though its code point is larger.
    expect(text).toBe('{"\\r":1,"1":3,"\u0080":5,"ö":6,"€":0,"😀":4,"דּ":2}');
  });

  it('writes numbers as ECMAScript does (RFC 8785 appendix B)', () => {
    const cases: [number, string][] = [
      [-0, '0'],
      [1e21, '1e+21'],
      [1e-7, '1e-7'],
      [0.000001, '0.000001'],
      [9007199254740991, '9007199254740991'],
      [1e23, '1e+23'],
      [5e-324, '5e-324'],
      [-1.7976931348623157e308, '-1.7976931348623157e+308'],
      [295147905179352830000, '295147905179352830000'],
    ];
    for (const [value, text] of cases) expect(canonicalJson(value), String(value)).toBe(text);
  });

  it('writes control characters as short or lowercase \\u escapes and everything else as is', () => {
    expect(canonicalJson('\b\t\n\f\r\u0000\u001f\u007f\u2028é😀"\\/')).toBe('"\\b\\t\\n\\f\\r\\u0000\\u001f\u007f\u2028é😀\\"\\\\/"');
  });

  it('refuses what RFC 8785 has no form for: lone surrogates, non-finite numbers, non-JSON values', () => {
    for (const value of ['\ud800', 'x\udc00y', { '\ud83d': 1 }, NaN, Infinity, [undefined], 10n, new Date(0), () => 1]) {
      expect(() => canonicalJson(value), String(typeof value)).toThrow(CanonicalJsonError);
    }
    expect(canonicalJson('\ud83d\ude00')).toBe('"😀"');
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });
});
