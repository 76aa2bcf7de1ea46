// Telemetry costs, each beside a baseline measured in the same run:
//  1. CPU time and child processes per status sample: fleetlet's sampler (/proc, /sys, statfs) vs the
//     systeminformation calls that would give the same readings (currentLoad, mem, fsSize, networkStats,
//     cpuTemperature).
//  2. The idle agent (bundled, default interval, link up to a local mosquitto when installed): CPU share and RSS
//     over a window, vs a bare Node process started alongside it.
//   usage: npm run bench:telemetry -- [--samples N] [--idle-seconds S] [--full] [--binary PATH]
//   (--full: a 10-minute window; --binary: measure that single executable instead of a fresh bundle)
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type * as ChildProcessModule from 'node:child_process';

const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '30' },
    'idle-seconds': { type: 'string', default: '120' },
    full: { type: 'boolean', default: false },
    'skip-idle': { type: 'boolean', default: false },
    binary: { type: 'string' },
  },
});
const SAMPLES = Number(values.samples);
const IDLE_SECONDS = values.full ? 600 : Number(values['idle-seconds']);
const ROOT = resolve(import.meta.dirname, '..');
const CLK_TCK = 100; // USER_HZ is 100 on every Linux architecture fleetlet targets

// Count every child process: async ones all pass through ChildProcess.prototype.spawn, the sync ones through
// the three exported *Sync functions (which call module-internal code, so nothing is counted twice). This has
// to happen before systeminformation is loaded, since it keeps references to these functions.
const require = createRequire(import.meta.url);
const childProcess = require('node:child_process') as typeof ChildProcessModule;
let childrenSpawned = 0;
const proto = childProcess.ChildProcess.prototype as unknown as { spawn: (...args: unknown[]) => unknown };
const originalSpawn = proto.spawn;
proto.spawn = function (this: unknown, ...args: unknown[]) {
  childrenSpawned += 1;
  return originalSpawn.apply(this, args);
};
for (const name of ['spawnSync', 'execSync', 'execFileSync'] as const) {
  const original = childProcess[name] as (...args: unknown[]) => unknown;
  (childProcess as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
    childrenSpawned += 1;
    return original(...args);
  };
}

/** utime, stime, cutime, cstime of a process, in milliseconds. */
function cpuTimesMs(pid: number | 'self'): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const ms = (ticks: number) => (ticks * 1000) / CLK_TCK;
  return { own: ms(fields[11]! + fields[12]!), children: ms(fields[13]! + fields[14]!) };
}

function rssKib(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) : NaN;
}

interface Cost {
  ownCpuMs: number;
  childCpuMs: number;
  children: number;
  /** Forks on the whole machine during the run: counts the shells' own children too, and anything else running. */
  machineForks: number;
  wallMs: number;
}

function machineForks(): number {
  return Number(/^processes (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
}

async function measure(iterations: number, once: () => unknown): Promise<Cost> {
  const cpu0 = process.cpuUsage();
  const children0 = cpuTimesMs('self').children;
  const spawned0 = childrenSpawned;
  const forks0 = machineForks();
  const wall0 = performance.now();
  for (let i = 0; i < iterations; i += 1) await once();
  // Let the last children be reaped, so their CPU time is counted.
  await new Promise((r) => setTimeout(r, 200));
  const cpu = process.cpuUsage(cpu0);
  return {
    ownCpuMs: (cpu.user + cpu.system) / 1000 / iterations,
    childCpuMs: (cpuTimesMs('self').children - children0) / iterations,
    children: (childrenSpawned - spawned0) / iterations,
    machineForks: (machineForks() - forks0) / iterations,
    wallMs: (performance.now() - wall0 - 200) / iterations,
  };
}

async function perSample(): Promise<void> {
  const { Sampler } = await import('../src/telemetry/sampler.js');
  const { SystemFiles } = await import('../src/telemetry/system-files.js');
  const { statfsDiskSpace } = await import('../src/telemetry/disk-space.js');
  const { buildStatus } = await import('../src/telemetry/status-builder.js');
  const { DEFAULT_PROVIDERS } = await import('../src/telemetry/providers.js');
  const si = await import('systeminformation');
  const sampler = new Sampler({
    files: new SystemFiles('/'),
    disks: [{ name: 'state', path: ROOT }, { name: 'k3s', path: tmpdir() }],
    diskSpace: statfsDiskSpace,
    minCpuIntervalMs: 0,
  });
  let seq = 0;
  const fleetlet = () => buildStatus((seq += 1), sampler.sample(), DEFAULT_PROVIDERS);
  const systeminformation = () =>
    Promise.all([si.currentLoad(), si.mem(), si.fsSize(), si.networkStats(), si.cpuTemperature()]);
  // Warm up both (module code, first-call caches), then measure them one after the other.
  for (let i = 0; i < 3; i += 1) {
    fleetlet();
    await systeminformation();
  }
  const ours = await measure(SAMPLES, fleetlet);
  const theirs = await measure(SAMPLES, systeminformation);
  const total = (c: Cost) => c.ownCpuMs + c.childCpuMs;
  const row = (name: string, c: Cost) =>
    `| ${name} | ${total(c).toFixed(2)} | ${c.ownCpuMs.toFixed(2)} | ${c.childCpuMs.toFixed(2)} | ${c.children.toFixed(1)} | ${c.machineForks.toFixed(1)} | ${c.wallMs.toFixed(2)} |`;
  console.log(`\nPer status sample, mean of ${SAMPLES} (this machine: ${process.arch}, Node ${process.version})\n`);
  console.log('| sampler | CPU ms (total) | CPU ms (fleetlet process) | CPU ms (children) | processes started by Node | forks on the machine | wall ms |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  console.log(row('fleetlet (/proc, /sys, statfs)', ours));
  console.log(row('systeminformation (same readings)', theirs));
  console.log(`\nfleetlet / systeminformation CPU per sample: ${(total(ours) / total(theirs)).toFixed(3)} (goal <= 0.1)`);
  console.log(`status payload: ${Buffer.byteLength(JSON.stringify(fleetlet()))} bytes JSON (goal <= 1024)`);
}

function startProcess(command: string, args: string[]): ChildProcess {
  return spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT });
}

async function idle(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetlet-bench-'));
  const bundle = join(ROOT, 'dist/bench-telemetry-agent.cjs');
  // Bundled as the single binary bundles it (no inline source map: the test bundle's map alone adds ~40 MB RSS).
  const { build } = await import('esbuild');
  if (!values.binary) await build({
    entryPoints: [join(ROOT, 'src/bin.ts')],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['better-sqlite3'],
    legalComments: 'none',
    logLevel: 'warning',
  });
  const { freePort } = await import('../test/helpers/ports.js');
  const { mosquittoAvailable, startMosquitto } = await import('../test/helpers/mosquitto.js');
  const broker = mosquittoAvailable() ? await startMosquitto() : undefined;
  const port = await freePort();
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      'device: { id: bench-idle }',
      `broker: { url: "${broker?.url ?? 'mqtt://127.0.0.1:1'}", allowPlaintext: true }`,
      'k3s: { enabled: false }',
      `stateDir: ${join(dir, 'state')}`,
      `telemetry: { http: { enabled: true, port: ${port} } }`,
      'log: { level: warn }',
      '',
    ].join('\n'),
  );
  const agent = values.binary
    ? startProcess(resolve(values.binary), ['agent', '--config', config])
    : startProcess(process.execPath, [bundle, 'agent', '--config', config]);
  const baseline = startProcess(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)']);
  try {
    // Startup (bundle load, database open, systeminformation inventory) is not idle: skip it.
    await new Promise((r) => setTimeout(r, 10_000));
    const start = { agent: cpuTimesMs(agent.pid!), baseline: cpuTimesMs(baseline.pid!), at: performance.now() };
    const rss = { agent: [] as number[], baseline: [] as number[] };
    const deadline = Date.now() + IDLE_SECONDS * 1000;
    while (Date.now() < deadline) {
      rss.agent.push(rssKib(agent.pid!));
      rss.baseline.push(rssKib(baseline.pid!));
      await new Promise((r) => setTimeout(r, Math.min(5000, Math.max(0, deadline - Date.now()))));
    }
    const seconds = (performance.now() - start.at) / 1000;
    const cpu = (pid: number, from: { own: number; children: number }) => {
      const now = cpuTimesMs(pid);
      return { percent: ((now.own - from.own) / 10 / seconds), children: now.children - from.children };
    };
    const a = cpu(agent.pid!, start.agent);
    const b = cpu(baseline.pid!, start.baseline);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
    const samples = metric('fleetlet_telemetry_samples_total');
    const sampleCpu = metric('fleetlet_telemetry_sample_cpu_seconds_total');
    const max = (xs: number[]) => Math.max(...xs) / 1024;
    const last = (xs: number[]) => xs[xs.length - 1]! / 1024;
    const what = values.binary ? `the single executable ${values.binary}` : 'a bundle as the single executable bundles it';
    console.log(`\nIdle over ${seconds.toFixed(0)} s at the default interval (30 s), ${what}, link ${broker ? 'up to a local mosquitto' : 'down'}\n`);
    console.log('| process | CPU % of one core | CPU ms of children | RSS MiB max | RSS MiB last |');
    console.log('| --- | --- | --- | --- | --- |');
    console.log(`| fleetlet agent | ${a.percent.toFixed(3)} | ${a.children} | ${max(rss.agent).toFixed(1)} | ${last(rss.agent).toFixed(1)} |`);
    console.log(`| bare node (baseline) | ${b.percent.toFixed(3)} | ${b.children} | ${max(rss.baseline).toFixed(1)} | ${last(rss.baseline).toFixed(1)} |`);
    console.log(`\nagent / baseline RSS: ${(max(rss.agent) / max(rss.baseline)).toFixed(2)}`);
    console.log(`samples taken by the agent: ${samples}; CPU per sample inside the agent (with the SQLite write): ${((sampleCpu / samples) * 1000).toFixed(2)} ms`);
  } finally {
    agent.kill('SIGTERM');
    baseline.kill('SIGTERM');
    await Promise.all([agent, baseline].map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)))));
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(bundle, { force: true });
  }
}

await perSample();
if (!values['skip-idle']) await idle();
