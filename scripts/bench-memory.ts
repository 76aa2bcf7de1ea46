// `npm run bench:memory`: RSS of the idle agent over time, beside the bare runtime started at the same moment.
// Each variant is an agent connected to a local mosquitto (k3s off, local endpoint off); the baseline is the same
// runtime running an empty timer. VmRSS is read from /proc every BENCH_SAMPLE_SECONDS (5); "steady" is the highest
// RSS after the first minute (or after the first third of a shorter run), "peak" is VmHWM, and the slope is a
// least-squares line through the RSS samples after that warm-up, in MiB per hour; the second-half slope leaves out the
// first half of the run, in which the agent still touches pages of its executable for the first time (docs/benchmarks.md).
// Knobs: BENCH_SECONDS (120; 600 for the 10-minute idle run, 3600 for the soak), BENCH_TELEMETRY_SECONDS (the
// agent's status interval: 30, the default; 5 for the soak), BENCH_BINARY (dist/fleetlet-linux-x64),
// BENCH_BUNDLE (dist/fleetlet.cjs, run by this node, which
// has the better-sqlite3 build node_modules holds; set it empty to leave it out),
// PACKAGE_ARCHES (x64; arm64 and armv7 run under qemu-user-static and compare only with their own baseline).
// Levers, each one more agent in the same run: BENCH_COMPARE (more binaries, comma-separated, e.g. one built from
// an older commit) and BENCH_NODE_OPTIONS (V8 flag sets separated by ";", each given to the binary as NODE_OPTIONS,
// which a SEA reads beside the execArgv of its blob). RssAnon and RssFile are read at the last sample.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { writeAgentConfig } from '../test/helpers/agent-config.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { tempDir } from '../test/helpers/paths.js';
import { ensureRuntime } from './package-runtimes.js';
import { DIST, TARGETS, binaryName, commandFor, selectArches, type Target } from './package-targets.js';

const MiB = 1024 * 1024;
const seconds = Number(process.env.BENCH_SECONDS ?? 120);
const sampleSeconds = Number(process.env.BENCH_SAMPLE_SECONDS ?? 5);
const telemetrySeconds = Number(process.env.BENCH_TELEMETRY_SECONDS ?? 30);
const warmupSeconds = Math.min(60, seconds / 3);
const compareBinaries = (process.env.BENCH_COMPARE ?? '').split(',').filter(Boolean);
const nodeOptionSets = (process.env.BENCH_NODE_OPTIONS ?? '').split(';').map((flags) => flags.trim()).filter(Boolean);
// fleetlet reads FLEETLET_* variables as config and refuses unknown ones: the children get none of the caller's.
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('FLEETLET_')));

interface Variant {
  name: string;
  child: ChildProcess;
  samples: { at: number; rss: number }[];
  stderr: string;
}

function start(target: Target, name: string, program: string, args: string[], nodeOptions?: string): Variant {
  const [command, argv] = commandFor(target, program, args);
  const env = nodeOptions ? { ...childEnv, NODE_OPTIONS: nodeOptions } : childEnv;
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'], env });
  const variant: Variant = { name, child, samples: [], stderr: '' };
  child.stderr!.on('data', (chunk: Buffer) => (variant.stderr = (variant.stderr + chunk.toString()).slice(-2000)));
  return variant;
}

function procStatus(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
}

/** Least-squares slope of RSS over time, in MiB per hour. */
function slopePerHour(samples: { at: number; rss: number }[]): number {
  const n = samples.length;
  if (n < 2) return NaN;
  const meanT = samples.reduce((sum, s) => sum + s.at, 0) / n;
  const meanR = samples.reduce((sum, s) => sum + s.rss, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.at - meanT) * (s.rss - meanR);
    den += (s.at - meanT) ** 2;
  }
  return (num / den) * 3600 / MiB;
}

async function measure(target: Target, variants: Variant[]): Promise<string[]> {
  const started = Date.now();
  const peaks = new Map<Variant, number>();
  const split = new Map<Variant, { anon: number; file: number }>();
  while (Date.now() - started < seconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, sampleSeconds * 1000));
    const at = (Date.now() - started) / 1000;
    for (const variant of variants) {
      if (variant.child.exitCode !== null) throw new Error(`${variant.name} exited ${variant.child.exitCode}: ${variant.stderr}`);
      variant.samples.push({ at, rss: procStatus(variant.child.pid!, 'VmRSS') });
      peaks.set(variant, procStatus(variant.child.pid!, 'VmHWM'));
      split.set(variant, { anon: procStatus(variant.child.pid!, 'RssAnon'), file: procStatus(variant.child.pid!, 'RssFile') });
    }
  }
  const bare = variants.at(-1)!;
  const bareSteady = Math.max(...bare.samples.filter((s) => s.at >= warmupSeconds).map((s) => s.rss));
  return variants.map((variant) => {
    const steadySamples = variant.samples.filter((s) => s.at >= warmupSeconds);
    const steady = Math.max(...steadySamples.map((s) => s.rss));
    const last = variant.samples.at(-1)!.rss;
    return (
      `| ${target.arch}${target.emulator ? ' (qemu)' : ''} | ${variant.name} | ${(steady / MiB).toFixed(1)} | ${(last / MiB).toFixed(1)} | ` +
      `${(split.get(variant)!.anon / MiB).toFixed(1)} | ${(split.get(variant)!.file / MiB).toFixed(1)} | ` +
      `${(peaks.get(variant)! / MiB).toFixed(1)} | ${slopePerHour(steadySamples).toFixed(2)} | ` +
      `${slopePerHour(variant.samples.filter((s) => s.at >= seconds / 2)).toFixed(2)} | ${(steady / bareSteady).toFixed(2)} |`
    );
  });
}

const broker = await startMosquitto();
const { dir, cleanup } = tempDir('fleetlet-bench-memory-');
const rows: string[] = [];
try {
  for (const arch of selectArches(process.env.PACKAGE_ARCHES ?? 'x64')) {
    const target = TARGETS[arch];
    const binary = process.env.BENCH_BINARY ?? join(DIST, binaryName(arch));
    const node = ensureRuntime(target).node;
    const bundle = process.env.BENCH_BUNDLE ?? join(DIST, 'fleetlet.cjs');
    const configFor = (name: string) =>
      writeAgentConfig(join(dir, arch, name), {
        device: { id: `bench-${arch}-${name}` },
        broker: { url: broker.url, allowPlaintext: true },
        telemetry: { intervalSeconds: telemetrySeconds, http: { enabled: false } },
        log: { level: 'warn' },
      });
    const variants: Variant[] = [];
    if (existsSync(binary)) {
      variants.push(start(target, 'agent, single binary', binary, ['agent', '--config', configFor('binary')]));
      for (const [index, flags] of nodeOptionSets.entries()) {
        variants.push(start(target, `agent, single binary, ${flags}`, binary, ['agent', '--config', configFor(`flags-${index}`)], flags));
      }
    }
    for (const [index, other] of compareBinaries.entries()) {
      variants.push(start(target, `agent, ${basename(other)}`, other, ['agent', '--config', configFor(`compare-${index}`)]));
    }
    // The plain bundle loads the host's better-sqlite3 build, so only the node running this script can run it.
    if (bundle && !target.emulator && existsSync(bundle)) {
      variants.push(start(target, 'agent, bundle run by this node', process.execPath, [bundle, 'agent', '--config', configFor('bundle')]));
    }
    if (variants.length === 0) continue;
    variants.push(start(target, 'bare runtime (baseline)', node, ['-e', 'setInterval(() => {}, 60000)']));
    try {
      rows.push(...(await measure(target, variants)));
    } finally {
      for (const variant of variants) variant.child.kill('SIGTERM');
      await Promise.all(variants.map((v) => (v.child.exitCode === null ? new Promise((r) => v.child.once('exit', r)) : undefined)));
    }
  }
} finally {
  await broker.close();
  cleanup();
}
console.log(`${seconds} s idle, status every ${telemetrySeconds} s, RSS sampled every ${sampleSeconds} s; steady = highest after ${warmupSeconds} s`);
console.log('| target | process | steady RSS MiB | last RSS MiB | last RssAnon MiB | last RssFile MiB | peak (VmHWM) MiB | slope MiB/h | slope, second half | steady / bare |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
