// Size, startup time and memory of the single binaries, each beside baselines measured in the same run with
// the same runtime: startup against `node -e 0`, memory against an idle `node` and (x64) against the plain
// bundle dist/fleetlet.cjs run by that runtime. Under qemu-user-static the figures include the emulator and only
// compare with each other. `npm run bench:package` after `npm run package` and `npm run bundle`;
// PACKAGE_ARCHES=x64 limits the targets.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeAgentConfig } from '../test/helpers/agent-config.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { tempDir } from '../test/helpers/paths.js';
import { ensureRuntime } from './package-runtimes.js';
import { DIST, TARGETS, binaryName, commandFor, selectArches, type Target } from './package-targets.js';

const MiB = 1024 * 1024;
// fleetlet reads FLEETLET_* variables as config and refuses unknown ones: the children get none of the caller's.
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('FLEETLET_')));

/** Median wall time of each command line, run alternately so that both see the same load. */
function interleavedMedians(target: Target, lines: [string, string[]][], runs: number): number[] {
  const times: number[][] = lines.map(() => []);
  for (let i = 0; i < runs; i++) {
    lines.forEach(([program, args], index) => {
      const [command, argv] = commandFor(target, program, args);
      const started = process.hrtime.bigint();
      const result = spawnSync(command, argv, { stdio: 'ignore', env: childEnv });
      if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} exited ${result.status}`);
      times[index]!.push(Number(process.hrtime.bigint() - started) / 1e6);
    });
  }
  return times.map((list) => list.sort((a, b) => a - b)[Math.floor(list.length / 2)]!);
}

/** RSS of a process once it has run `settleMs` (VmRSS of the emulator process under qemu). */
async function rssAfter(target: Target, program: string, args: string[], settleMs: number): Promise<number> {
  const [command, argv] = commandFor(target, program, args);
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: childEnv });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  if (child.exitCode !== null) throw new Error(`${command} ${argv.join(' ')} exited ${child.exitCode}: ${stderr}`);
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024;
}

const broker = await startMosquitto();
const { dir, cleanup } = tempDir('fleetlet-bench-package-');
const rows: string[] = [];
try {
  for (const arch of selectArches(process.env.PACKAGE_ARCHES)) {
    const binary = join(DIST, binaryName(arch));
    if (!existsSync(binary)) continue;
    const target = TARGETS[arch];
    const node = ensureRuntime(target).node;
    const emulated = target.emulator !== undefined;
    const runs = emulated ? 5 : 15;
    const settleMs = emulated ? 10_000 : 4_000;
    const config = writeAgentConfig(join(dir, arch), { device: { id: `bench-${arch}` }, broker: { url: broker.url, allowPlaintext: true } });
    const [startup = NaN, baseline = NaN] = interleavedMedians(target, [[binary, ['--version']], [node, ['-e', '0']]], runs);
    const agentRss = await rssAfter(target, binary, ['agent', '--config', config], settleMs);
    const idleRss = await rssAfter(target, node, ['-e', 'setTimeout(() => {}, 60000)'], settleMs);
    // The plain bundle loads the host's better-sqlite3 build, so it only runs on x64 here.
    const bundleRss = emulated ? undefined : await rssAfter(target, node, [join(DIST, 'fleetlet.cjs'), 'agent', '--config', config], settleMs);
    const size = statSync(binary).size / MiB;
    const xz = statSync(`${binary}.xz`).size / MiB;
    rows.push(
      `| ${arch}${emulated ? ' (qemu)' : ''} | ${size.toFixed(1)} MiB (${xz.toFixed(1)} xz) | ${startup.toFixed(0)} ms | ${baseline.toFixed(0)} ms | ` +
        `${(agentRss / MiB).toFixed(0)} MiB | ${bundleRss ? `${(bundleRss / MiB).toFixed(0)} MiB` : '-'} | ${(idleRss / MiB).toFixed(0)} MiB |`,
    );
  }
} finally {
  await broker.close();
  cleanup();
}
console.log('| target | binary | `--version` (median) | `node -e 0` same runtime | agent RSS | agent RSS, plain bundle | idle `node` RSS |');
console.log('|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
