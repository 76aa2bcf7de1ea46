// Checks src/ (or the directory given) against DESIGN.md's dependency direction; the rules are in
// dependency-rules.ts. Exits 1 and lists every violation when there is one.
import { resolve } from 'node:path';
import { checkDependencies } from './dependency-rules.js';

const src = resolve(process.argv[2] ?? resolve(import.meta.dirname, '../src'));
const violations = checkDependencies(src);
if (violations.length > 0) {
  console.error(`dependency direction: ${violations.length} violation(s)\n${violations.map((v) => `  ${v}`).join('\n')}`);
  process.exit(1);
}
console.log('dependency direction: ok');
