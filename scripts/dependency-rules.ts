// DESIGN.md's dependency direction between the rooms of src/, as rules a checker can apply to source text:
//   main -> {daemon, cli} -> features {commands, telemetry, k3s, link, fleet, hub} -> core {store, identity, protocol, config} -> lib
// A room may import from its own room and from rooms below it; lib imports nothing else from src. Features never
// import each other, with one exception: what two features must agree on is declared once, in the owning feature's
// ports.ts, and other features may `import type` from that file (a whole-declaration `import type` or
// `export type ... from`, which the compiler erases, so no feature loads another at run time). A ports.ts holds types
// only. Every way of naming a module counts: static imports, `export ... from`, `import()`, `require()` and
// `import('...')` types. An interface or type exported under the same name by two features is a contract declared
// twice: it belongs in one ports.ts.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import ts from 'typescript';

export const RANK: Readonly<Record<string, number>> = {
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
export const PORTS_FILE = 'ports.ts';

interface ModuleReference {
  /** undefined for an `import()` or `require()` whose argument is not a string literal. */
  specifier: string | undefined;
  typeOnly: boolean;
  how: string;
  line: number;
}

export function checkDependencies(srcDir: string): string[] {
  const src = resolve(srcDir);
  const violations: string[] = [];
  const exportedTypes = new Map<string, string[]>();
  for (const file of sourceFiles(src)) {
    const rel = relative(src, file);
    const from = roomOf(rel);
    if (RANK[from] === undefined) violations.push(`${rel}: room "${from}" is not in DESIGN.md's layout`);
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    if (isPortsFile(rel)) violations.push(...runtimeStatementsIn(source, rel));
    for (const reference of moduleReferences(source)) {
      const problem = referenceProblem(src, rel, from, reference);
      if (problem) violations.push(`${rel}:${reference.line} ${reference.how} ${reference.specifier ?? '(computed)'}: ${problem}`);
    }
    if (RANK[from] === FEATURE && !isPortsFile(rel)) {
      for (const name of exportedTypeNames(source)) exportedTypes.set(name, [...(exportedTypes.get(name) ?? []), rel]);
    }
  }
  for (const [name, files] of exportedTypes) {
    const rooms = new Set(files.map(roomOf));
    if (rooms.size > 1) violations.push(`${name} is declared in ${files.join(' and ')}: declare it once, in the owning feature's ${PORTS_FILE}`);
  }
  return violations;
}

function referenceProblem(src: string, rel: string, from: string, reference: ModuleReference): string | undefined {
  if (reference.specifier === undefined) return 'name the module with a string literal, so that its room can be checked';
  if (!reference.specifier.startsWith('.')) return undefined; // a package or a node: builtin
  const target = resolve(dirname(join(src, rel)), reference.specifier);
  if (!target.startsWith(`${src}/`)) return undefined;
  const targetRel = relative(src, target).replace(/\.js$/, '.ts');
  const to = roomOf(targetRel);
  if (to === from) return undefined;
  if (from === 'lib') return 'lib imports nothing else from src';
  const [a, b] = [RANK[from] ?? -1, RANK[to] ?? -1];
  if (b < a) return `${from} may not depend on ${to} (it is above it)`;
  if (a !== FEATURE || b !== FEATURE) return undefined;
  if (!isPortsFile(targetRel)) return `features do not import each other; what ${from} needs of ${to} belongs in ${to}/${PORTS_FILE}`;
  if (!reference.typeOnly) return `only types cross between features: use \`import type\` (or \`export type ... from\`) from ${to}/${PORTS_FILE}`;
  return undefined;
}

function moduleReferences(source: ts.SourceFile): ModuleReference[] {
  const found: ModuleReference[] = [];
  const line = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
  const literal = (node: ts.Node | undefined) =>
    node && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) ? node.text : undefined;
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      found.push({ specifier: literal(node.moduleSpecifier), typeOnly: node.importClause?.isTypeOnly === true, how: 'imports', line: line(node) });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      found.push({ specifier: literal(node.moduleSpecifier), typeOnly: node.isTypeOnly, how: 're-exports', line: line(node) });
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      found.push({ specifier: literal(node.moduleReference.expression), typeOnly: node.isTypeOnly, how: 'imports', line: line(node) });
    } else if (ts.isImportTypeNode(node)) {
      const argument = ts.isLiteralTypeNode(node.argument) ? literal(node.argument.literal) : undefined;
      found.push({ specifier: argument, typeOnly: true, how: 'names the type of', line: line(node) });
    } else if (ts.isCallExpression(node)) {
      const dynamic = node.expression.kind === ts.SyntaxKind.ImportKeyword;
      const required = ts.isIdentifier(node.expression) && node.expression.text === 'require';
      if (dynamic || required) {
        found.push({ specifier: literal(node.arguments[0]), typeOnly: false, how: dynamic ? 'loads with import()' : 'loads with require()', line: line(node) });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** A ports.ts is a contract: interfaces, type aliases and type-only imports and re-exports, nothing that runs. */
function runtimeStatementsIn(source: ts.SourceFile, rel: string): string[] {
  const problems: string[] = [];
  for (const statement of source.statements) {
    const typeOnly =
      ts.isInterfaceDeclaration(statement) ||
      ts.isTypeAliasDeclaration(statement) ||
      (ts.isImportDeclaration(statement) && statement.importClause?.isTypeOnly === true) ||
      (ts.isExportDeclaration(statement) && statement.isTypeOnly);
    if (!typeOnly) {
      const line = source.getLineAndCharacterOfPosition(statement.getStart(source)).line + 1;
      problems.push(`${rel}:${line}: a ${PORTS_FILE} holds types only (interfaces, type aliases, \`import type\`, \`export type\`)`);
    }
  }
  return problems;
}

function exportedTypeNames(source: ts.SourceFile): string[] {
  return source.statements
    .filter((s): s is ts.InterfaceDeclaration | ts.TypeAliasDeclaration => ts.isInterfaceDeclaration(s) || ts.isTypeAliasDeclaration(s))
    .filter((s) => s.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) === true)
    .map((s) => s.name.text);
}

function isPortsFile(rel: string): boolean {
  const parts = rel.split('/');
  return parts.length === 2 && parts[1] === PORTS_FILE;
}

function roomOf(rel: string): string {
  const first = rel.split('/')[0]!;
  return rel.includes('/') ? first : first.replace(/\.[jt]s$/, '');
}

function* sourceFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sourceFiles(path);
    else if (name.endsWith('.ts')) yield path;
  }
}
