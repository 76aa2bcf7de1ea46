// Enforces DESIGN.md's dependency direction between the rooms of src/:
//   main -> {daemon, cli} -> features {commands, telemetry, k3s, link, fleet, hub} -> core {store, identity, protocol, config} -> lib
// A room may import from its own room and from rooms below it. Features never import each other (they get
// narrow interfaces from the composition root), and lib imports nothing else from src.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = resolve(import.meta.dirname, '../src');
const RANK: Record<string, number> = {
  main: 0,
  bin: 0,
  daemon: 1,
  cli: 1,
  commands: 2,
  telemetry: 2,
  k3s: 2,
  link: 2,
  fleet: 2,
  hub: 2,
  store: 3,
  identity: 3,
  protocol: 3,
  config: 3,
  lib: 4,
};
const FEATURE = 2;

function roomOf(file: string): string {
  const rel = relative(SRC, file);
  const first = rel.split('/')[0]!;
  return rel.includes('/') ? first : first.replace(/\.[jt]s$/, '');
}

function* sourceFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sourceFiles(path);
    else if (name.endsWith('.ts')) yield path;
  }
}

const violations: string[] = [];
for (const file of sourceFiles(SRC)) {
  const from = roomOf(file);
  if (RANK[from] === undefined) violations.push(`${relative(SRC, file)}: room "${from}" is not in DESIGN.md's layout`);
  const text = readFileSync(file, 'utf8');
  for (const match of text.matchAll(/(?:import|export)[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/g)) {
    const target = resolve(dirname(file), match[1]!);
    if (!target.startsWith(SRC)) continue;
    const to = roomOf(target);
    if (to === from) continue;
    const [a, b] = [RANK[from] ?? -1, RANK[to] ?? -1];
    const where = `${relative(SRC, file)} imports ${match[1]}`;
    if (b < a) violations.push(`${where}: ${from} may not depend on ${to} (it is above it)`);
    else if (a === FEATURE && b === FEATURE) violations.push(`${where}: features do not import each other; pass an interface`);
    else if (from === 'lib') violations.push(`${where}: lib imports nothing else from src`);
  }
}

if (violations.length > 0) {
  console.error(`dependency direction: ${violations.length} violation(s)\n${violations.map((v) => `  ${v}`).join('\n')}`);
  process.exit(1);
}
console.log('dependency direction: ok');
