import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FLEETLET_BUNDLE } from './paths.js';

export type ProgramArch = 'x64' | 'arm64' | 'armv7';

const COMPILERS: Record<ProgramArch, string> = { x64: 'gcc', arm64: 'aarch64-linux-gnu-gcc', armv7: 'arm-linux-gnueabihf-gcc' };
const EMULATORS: Record<ProgramArch, string | undefined> = { x64: undefined, arm64: 'qemu-aarch64-static', armv7: 'qemu-arm-static' };

/** CI installs the cross compilers and qemu-user-static; elsewhere the tests that need them are skipped. */
export const REQUIRE_ELF_TOOLS = process.env.TEST_REQUIRE_INSTALL_TOOLS === '1';

/** Whether this machine can build programs of `arch` and run them (natively or under qemu-user). */
export function canBuildAndRun(arch: ProgramArch): boolean {
  const tools = [COMPILERS[arch], EMULATORS[arch]].filter((tool): tool is string => tool !== undefined);
  return tools.every((tool) => spawnSync(tool, ['--version']).error === undefined);
}

/** Compiles C source into a real, static ELF executable of `arch`: what a binary for that board is made of. */
export function compileProgram(arch: ProgramArch, source: string, out: string): string {
  const result = spawnSync(COMPILERS[arch], ['-static', '-O1', '-o', out, '-x', 'c', '-'], { input: source, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${COMPILERS[arch]} failed: ${result.error?.message ?? result.stderr}`);
  return out;
}

/** An executable of `arch` that answers --version with `version`, as the fleetlet single binary does, and fails otherwise. */
export function versionProgram(arch: ProgramArch, dir: string, version: string): string {
  const source = `#include <stdio.h>\n#include <string.h>\nint main(int argc, char **argv) {\n  if (argc > 1 && strcmp(argv[1], "--version") == 0) { puts("${version}"); return 0; }\n  return 1;\n}\n`;
  return compileProgram(arch, source, join(dir, `fleetlet-linux-${arch}`));
}

/**
 * A native ELF executable that runs the bundled CLI with its own arguments: the single binary embeds the same bundle,
 * so it behaves as fleetlet does, and provision accepts it as an executable of this machine's arch (compiled natively).
 */
export function bundleLauncher(dir: string, name = 'fleetlet-launcher'): string {
  const quote = (text: string) => JSON.stringify(text);
  const source = [
    '#include <unistd.h>',
    '#include <stdlib.h>',
    'int main(int argc, char **argv) {',
    '  char **args = calloc(argc + 2, sizeof(char *));',
    `  args[0] = ${quote(process.execPath)};`,
    `  args[1] = ${quote(FLEETLET_BUNDLE)};`,
    '  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];',
    `  execv(${quote(process.execPath)}, args);`,
    '  return 127;',
    '}',
  ].join('\n');
  const out = join(dir, name);
  const result = spawnSync('cc', ['-O1', '-o', out, '-x', 'c', '-'], { input: source, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`cc failed: ${result.error?.message ?? result.stderr}`);
  return out;
}
