// `npm run bench:start`: how long the built agent takes from its launch to its first presence on the broker, and
// whether its first status sample carries a CPU reading; beside baselines taken in the same run, alternately with
// it: `node -e 0` of the same runtime and the binary's `--version` (the runtime and the bundle loaded, no agent).
// "restart" starts the agent on the state a previous run left (the usual start: a reboot, an upgrade);
// "first start" on an empty state directory (the device's keys are made and the database created).
// Knobs: BENCH_RUNS (10), BENCH_BINARY (dist/fleetlet-linux-x64), PACKAGE_ARCHES (x64; arm64 and armv7 run under
// qemu-user-static and compare only with their own baseline).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { PresenceSchema } from '../src/protocol/presence.js';
import { StatusSchema } from '../src/protocol/status.js';
import { writeAgentConfig } from '../test/helpers/agent-config.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { tempDir } from '../test/helpers/paths.js';
import { ensureRuntime } from './package-runtimes.js';
import { DIST, TARGETS, binaryName, commandFor, selectArches, type Target } from './package-targets.js';

const runs = Number(process.env.BENCH_RUNS ?? 10);
// fleetlet reads FLEETLET_* variables as config and refuses unknown ones: the children get none of the caller's.
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('FLEETLET_')));

function wallMs(target: Target, program: string, args: string[]): number {
  const [command, argv] = commandFor(target, program, args);
  const started = performance.now();
  const result = spawnSync(command, argv, { stdio: 'ignore', env: childEnv });
  if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} exited ${result.status}`);
  return performance.now() - started;
}

interface AgentStart {
  presenceMs: number;
  firstStatusMs: number;
  firstCpuPercent: number | undefined;
}

/** Launches the agent and waits for its live (not retained) `online` presence and its first status sample. */
async function agentStart(target: Target, brokerUrl: string, binary: string, config: string, deviceId: string): Promise<AgentStart> {
  const observer = await connectAsync(brokerUrl, { reconnectPeriod: 0 });
  const seen: Partial<AgentStart> = {};
  let started = 0;
  const both = new Promise<void>((resolve) => {
    observer.on('message', (topic, payload, packet) => {
      const at = performance.now() - started;
      if (packet.retain) return;
      const json: unknown = JSON.parse(payload.toString());
      if (topic.endsWith('/presence') && PresenceSchema.safeParse(json).data?.state === 'online') seen.presenceMs ??= at;
      if (topic.endsWith('/status') && seen.firstStatusMs === undefined) {
        seen.firstStatusMs = at;
        seen.firstCpuPercent = StatusSchema.parse(json).cpu.percent ?? undefined;
      }
      if (seen.presenceMs !== undefined && seen.firstStatusMs !== undefined) resolve();
    });
  });
  await observer.subscribeAsync([`fleetlet/v1/devices/${deviceId}/presence`, `fleetlet/v1/devices/${deviceId}/status`], { qos: 1 });
  const [command, argv] = commandFor(target, binary, ['agent', '--config', config]);
  started = performance.now();
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: childEnv });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no presence and status in 60 s: ${stderr}`)), 60_000).unref());
    await Promise.race([both, timeout, exited.then(() => Promise.reject(new Error(`the agent exited: ${stderr}`)))]);
    return seen as AgentStart;
  } finally {
    child.kill('SIGTERM');
    await exited;
    await observer.endAsync(true);
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const broker = await startMosquitto();
const { dir, cleanup } = tempDir('fleetlet-bench-start-');
const rows: string[] = [];
try {
  for (const arch of selectArches(process.env.PACKAGE_ARCHES ?? 'x64')) {
    const target = TARGETS[arch];
    const binary = process.env.BENCH_BINARY ?? join(DIST, binaryName(arch));
    if (!existsSync(binary)) continue;
    const node = ensureRuntime(target).node;
    const configFor = (name: string) =>
      writeAgentConfig(join(dir, arch, name), {
        device: { id: `bench-${arch}-${name}` },
        broker: { url: broker.url, allowPlaintext: true },
        log: { level: 'warn' },
      });
    const restartConfig = configFor('restart');
    await agentStart(target, broker.url, binary, restartConfig, `bench-${arch}-restart`);
    const times = { node: [] as number[], version: [] as number[], restart: [] as AgentStart[], first: [] as AgentStart[] };
    for (let run = 0; run < runs; run++) {
      times.node.push(wallMs(target, node, ['-e', '0']));
      times.version.push(wallMs(target, binary, ['--version']));
      times.restart.push(await agentStart(target, broker.url, binary, restartConfig, `bench-${arch}-restart`));
      rmSync(join(dir, arch, 'first'), { recursive: true, force: true });
      times.first.push(await agentStart(target, broker.url, binary, configFor('first'), `bench-${arch}-first`));
    }
    const emulated = target.emulator ? ' (qemu)' : '';
    const row = (what: string, ms: number, extra = '') => rows.push(`| ${arch}${emulated} | ${what} | ${ms.toFixed(0)} | ${extra} |`);
    row(`\`node -e 0\`, runtime ${target.runtime.version} (baseline)`, median(times.node));
    row('`fleetlet --version` (baseline)', median(times.version));
    for (const [what, list] of [['restart', times.restart], ['first start', times.first]] as const) {
      const withCpu = list.filter((s) => typeof s.firstCpuPercent === 'number').length;
      row(`agent ${what}: launch to first presence`, median(list.map((s) => s.presenceMs)), `slowest ${Math.max(...list.map((s) => s.presenceMs)).toFixed(0)} ms`);
      row(`agent ${what}: launch to first status`, median(list.map((s) => s.firstStatusMs)), `${withCpu} of ${list.length} first samples with a CPU reading`);
    }
  }
} finally {
  await broker.close();
  cleanup();
}
console.log(`${runs} runs of each, alternating; medians`);
console.log('| target | what | ms (median) | notes |');
console.log('|---|---|---|---|');
for (const row of rows) console.log(row);
