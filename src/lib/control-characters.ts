/**
 * C0 controls, DEL and C1 controls. In a secret they are a paste gone wrong at best, and a value with a NUL byte
 * makes Node's spawn fail with an error that quotes it; a URL parser drops tabs and newlines silently, so the URL
 * used would not be the one written.
 */
export function hasControlCharacter(value: string): boolean {
  for (const char of value) {
    const code = char.codePointAt(0)!;
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true;
  }
  return false;
}
