import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ESLint } from 'eslint';
import { describe, expect, it, onTestFinished } from 'vitest';
import { REPO_ROOT, tempDir } from '../helpers/paths.js';

const run = promisify(execFile);

// The first lint builds the TypeScript program of the whole project: seconds on a loaded machine.
describe('type-aware ESLint (npm run lint)', { timeout: 120_000 }, () => {
  const eslint = new ESLint({ cwd: REPO_ROOT });
  const misuse = [
    'export async function save(): Promise<void> {}',
    'export function forget(): void {',
    '  save();',
    '}',
    'export const each = [1].forEach(async () => {',
    '  await save();',
    '});',
    'export function meant(): void {',
    '  // fire-and-forget on purpose: errors handled by the caught promise',
    '  void save().catch(() => undefined);',
    '}',
  ].join('\n');

  it.each(['src/lib/heartbeat.ts', 'scripts/check-deps.ts', 'test/unit/backoff.test.ts'])(
    'refuses a floating promise and a promise where a void callback is expected in %s',
    async (file) => {
      const [result] = await eslint.lintText(misuse, { filePath: join(REPO_ROOT, file) });
      const found = result!.messages.map((m) => `${m.line} ${m.ruleId}`);
      expect(found).toEqual(['3 @typescript-eslint/no-floating-promises', '5 @typescript-eslint/no-misused-promises']);
    },
  );
});

describe('copy detection (npm run lint)', () => {
  const jscpd = (dir: string) =>
    run(join(REPO_ROOT, 'node_modules/.bin/jscpd'), ['--config', join(REPO_ROOT, '.jscpd.json'), dir], { cwd: REPO_ROOT }).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
    );

  function tree(files: Record<string, string>): string {
    const { dir, cleanup } = tempDir('fleetlet-jscpd-');
    onTestFinished(cleanup);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  }

  const block = (name: string) =>
    [
      `export function ${name}(file: string, maxBytes: number): string {`,
      '  const size = statSync(file).size;',
      '  if (size > maxBytes) throw new Error(`${file} is larger than ${maxBytes} bytes`);',
      "  const text = readFileSync(file, 'utf8');",
      "  if (text.includes('\\u0000')) throw new Error(`${file} holds a NUL byte`);",
      '  return text.trim();',
      '}',
      '',
    ].join('\n');
  const imports = "import { readFileSync, statSync } from 'node:fs';\nimport { z } from 'zod';\nimport type { Logger } from '../lib/logger.js';\n";

  it('fails on a block of logic copied from one file to another', async () => {
    const result = await jscpd(tree({ 'a.ts': `${imports}${block('readKeyFile')}`, 'b.ts': `${imports}${block('readArgFile')}` }));
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/Clone found \(typescript\):\n - .*a\.ts/);
  });

  it('passes declarations that only look alike: the same imports and a shape with the same fields', async () => {
    const shape = (name: string) => `export interface ${name} {\n  state: string;\n  healthy: boolean;\n  version?: string;\n  nodeName?: string;\n}\n`;
    const result = await jscpd(tree({ 'a.ts': `${imports}${shape('K3sView')}`, 'b.ts': `${imports}${shape('NodeView')}` }));
    expect(result).toMatchObject({ code: 0 });
    expect(result.stdout).toContain('Found 0 clones.');
  });
});
