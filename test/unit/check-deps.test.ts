import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished } from 'vitest';
import { checkDependencies } from '../../scripts/dependency-rules.js';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';

const run = promisify(execFile);

/** A small src/ tree: the k3s room offers a contract in its ports.ts, commands uses it the allowed way. */
const ALLOWED: Record<string, string> = {
  'k3s/ports.ts': [
    "export type { K3sEvent } from './events.js';",
    "import type { Secret } from '../lib/secret.js';",
    'export interface K3sView { state: string; token?: Secret }',
    'export type HealthVerdict = { healthy: true } | { healthy: false; reason: string };',
  ].join('\n'),
  'k3s/events.ts': 'export interface K3sEvent { kind: string }',
  'k3s/control.ts': "import type { K3sView } from './ports.js';\nexport const view = (): K3sView => ({ state: 'running' });",
  'lib/secret.ts': 'export class Secret {}',
  'commands/restart.ts': "import type { K3sView, K3sEvent } from '../k3s/ports.js';\nexport type Seen = K3sView | K3sEvent;",
  'telemetry/providers.ts': [
    "export type { K3sView } from '../k3s/ports.js';",
    "export type Verdict = import('../k3s/ports.js').HealthVerdict;",
    "import { Secret } from '../lib/secret.js';",
    'export const secret = new Secret();',
  ].join('\n'),
  'main.ts': "import { view } from './k3s/control.js';\nexport const start = async () => (await import('./commands/restart.js'), view());",
};

function srcTree(extra: Record<string, string> = {}): string {
  const { dir, cleanup } = tempDir('fleetlet-check-deps-');
  onTestFinished(cleanup);
  for (const [path, text] of Object.entries({ ...ALLOWED, ...extra })) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), `${text}\n`);
  }
  return dir;
}

function violationsWith(extra: Record<string, string>): string[] {
  return checkDependencies(srcTree(extra));
}

describe('dependency rules', () => {
  it('accept type-only imports, re-exports and import() types of another feature\'s ports.ts', () => {
    expect(checkDependencies(srcTree())).toEqual([]);
  });

  it('refuse a value import from another feature', () => {
    const violations = violationsWith({ 'commands/upgrade.ts': "import { view } from '../k3s/control.js';\nview();" });
    expect(violations).toEqual([expect.stringMatching(/^commands\/upgrade\.ts:1 imports \.\.\/k3s\/control\.js: features do not import each other/)]);
  });

  it('refuse `import type` from a file of another feature that is not its ports.ts', () => {
    const violations = violationsWith({ 'telemetry/events.ts': "import type { K3sEvent } from '../k3s/events.js';\nexport type E = K3sEvent;" });
    expect(violations).toEqual([expect.stringContaining('belongs in k3s/ports.ts')]);
  });

  it('refuse a value import of a ports.ts, also one whose names are each marked `type`', () => {
    const violations = violationsWith({
      'commands/a.ts': "import { K3sView } from '../k3s/ports.js';\nexport type A = K3sView;",
      'commands/b.ts': "import { type K3sView } from '../k3s/ports.js';\nexport type B = K3sView;",
      'commands/c.ts': "import '../k3s/ports.js';",
    });
    expect(violations).toHaveLength(3);
    for (const violation of violations) expect(violation).toContain('only types cross between features');
  });

  it('refuse import() and require() of another feature, and an import() whose module is computed', () => {
    const violations = violationsWith({
      'commands/lazy.ts': [
        "export const load = () => import('../k3s/control.js');",
        "export const loadPorts = () => import('../k3s/ports.js');",
        "declare const require: (id: string) => unknown;\nexport const old = require('../telemetry/providers.js');",
        "export const computed = (room: string) => import(`../${room}/control.js`);",
      ].join('\n'),
    });
    expect(violations).toEqual([
      expect.stringMatching(/lazy\.ts:1 loads with import\(\) \.\.\/k3s\/control\.js: features do not import each other/),
      expect.stringMatching(/lazy\.ts:2 loads with import\(\) \.\.\/k3s\/ports\.js: only types cross/),
      expect.stringMatching(/lazy\.ts:4 loads with require\(\) \.\.\/telemetry\/providers\.js: features do not import each other/),
      expect.stringMatching(/lazy\.ts:5 loads with import\(\) \(computed\): name the module with a string literal/),
    ]);
  });

  it('refuse `export ... from` another feature unless it is `export type` from its ports.ts', () => {
    const violations = violationsWith({
      'link/reexport.ts': "export * from '../k3s/ports.js';\nexport { view } from '../k3s/control.js';\nexport type { K3sEvent } from '../k3s/events.js';",
    });
    expect(violations).toEqual([
      expect.stringMatching(/reexport\.ts:1 re-exports \.\.\/k3s\/ports\.js: only types cross/),
      expect.stringMatching(/reexport\.ts:2 re-exports \.\.\/k3s\/control\.js: features do not import each other/),
      expect.stringMatching(/reexport\.ts:3 re-exports \.\.\/k3s\/events\.js: features do not import each other/),
    ]);
  });

  it('refuse code that runs in a ports.ts', () => {
    const violations = violationsWith({
      'fleet/ports.ts': "import { Secret } from '../lib/secret.js';\nexport interface FleetView { online: number }\nexport const EMPTY: FleetView = { online: 0 };\nexport class Thing extends Secret {}",
    });
    expect(violations.map((v) => v.split(':').slice(0, 2).join(':'))).toEqual(['fleet/ports.ts:1', 'fleet/ports.ts:3', 'fleet/ports.ts:4']);
    for (const violation of violations) expect(violation).toContain('holds types only');
  });

  it('refuse a core room depending on a feature, even on its ports types, and lib on anything else in src', () => {
    const violations = violationsWith({
      'store/outbox.ts': "import type { K3sView } from '../k3s/ports.js';\nexport type V = K3sView;",
      'lib/logger.ts': "import type { K3sView } from '../k3s/ports.js';\nimport { Secret } from './secret.js';\nexport type L = K3sView | Secret;",
    });
    expect(violations).toEqual([
      expect.stringContaining('lib/logger.ts:1 imports ../k3s/ports.js: lib imports nothing else from src'),
      expect.stringContaining('store/outbox.ts:1 imports ../k3s/ports.js: store may not depend on k3s (it is above it)'),
    ]);
  });

  it('refuse a contract declared in two features, and a room DESIGN.md does not know', () => {
    const violations = violationsWith({
      'commands/control.ts': 'export interface K3sControl { restart(): Promise<void> }',
      'k3s/supervised.ts': 'export interface K3sControl { restart(): Promise<void>; stop(): Promise<void> }',
      'contracts/shared.ts': 'export type Shared = string;',
    });
    expect(violations).toEqual([
      'contracts/shared.ts: room "contracts" is not in DESIGN.md\'s layout',
      "K3sControl is declared in commands/control.ts and k3s/supervised.ts: declare it once, in the owning feature's ports.ts",
    ]);
  });
});

describe('scripts/check-deps.ts', () => {
  const checkDeps = (src?: string) =>
    run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/check-deps.ts'), ...(src ? [src] : [])], { cwd: REPO_ROOT }).then(
      ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
      (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
    );

  it('exits 1 and lists each violation for a tree that breaks the rules, 0 for fleetlet\'s own src', async () => {
    const broken = await checkDeps(srcTree({ 'commands/lazy.ts': "export const load = () => import('../k3s/control.js');" }));
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('dependency direction: 1 violation(s)');
    expect(broken.stderr).toContain('commands/lazy.ts:1 loads with import() ../k3s/control.js');
    const real = await checkDeps();
    expect(real).toMatchObject({ code: 0, stdout: 'dependency direction: ok\n' });
  });
});
