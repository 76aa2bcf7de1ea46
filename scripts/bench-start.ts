// `npm run bench:start`: how long the built agent takes from its launch to its first presence on the broker, and
// whether its first status sample carries a CPU reading; beside baselines taken in the same run, alternately with
// it: `node -e 0` of the same runtime and the binary's `--version` (the runtime and the bundle loaded, no agent).
// "restart" starts the agent on the state a previous run left (the usual start: a reboot, an upgrade);
// "first start" on an empty state directory (the device's keys are made and the database created).
// Knobs: BENCH_RUNS (10), BENCH_BINARY (dist/fleetlet-linux-x64), BENCH_COMPARE (more binaries of the same arch,
// comma-separated, e.g. one built from an older commit: measured in the same rounds), PACKAGE_ARCHES (x64; arm64
// and armv7 run under qemu-user-static and compare only with their own baseline).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
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
    const binaries = [process.env.BENCH_BINARY ?? join(DIST, binaryName(arch)), ...(process.env.BENCH_COMPARE ?? '').split(',').filter(Boolean)];
    if (!existsSync(binaries[0]!)) continue;
    const node = ensureRuntime(target).node;
    const configFor = (name: string) =>
      writeAgentConfig(join(dir, arch, name), {
        device: { id: `bench-${arch}-${name}` },
        broker: { url: broker.url, allowPlaintext: true },
        log: { level: 'warn' },
      });
    const nodeTimes: number[] = [];
    const perBinary = binaries.map((binary, index) => ({
      binary,
      restartConfig: configFor(`restart-${index}`),
      version: [] as number[],
      restart: [] as AgentStart[],
      first: [] as AgentStart[],
    }));
    for (const [index, each] of perBinary.entries()) await agentStart(target, broker.url, each.binary, each.restartConfig, `bench-${arch}-restart-${index}`);
    for (let run = 0; run < runs; run++) {
      nodeTimes.push(wallMs(target, node, ['-e', '0']));
      for (const [index, each] of perBinary.entries()) {
        each.version.push(wallMs(target, each.binary, ['--version']));
        each.restart.push(await agentStart(target, broker.url, each.binary, each.restartConfig, `bench-${arch}-restart-${index}`));
        rmSync(join(dir, arch, `first-${index}`), { recursive: true, force: true });
        each.first.push(await agentStart(target, broker.url, each.binary, configFor(`first-${index}`), `bench-${arch}-first-${index}`));
      }
    }
    const emulated = target.emulator ? ' (qemu)' : '';
    const row = (what: string, ms: number, extra = '') => rows.push(`| ${arch}${emulated} | ${what} | ${ms.toFixed(0)} | ${extra} |`);
    row(`\`node -e 0\`, runtime ${target.runtime.version} (baseline)`, median(nodeTimes));
    for (const each of perBinary) {
      const name = basename(each.binary);
      row(`${name} \`--version\` (baseline)`, median(each.version));
      for (const [what, list] of [['restart', each.restart], ['first start', each.first]] as const) {
        const withCpu = list.filter((s) => typeof s.firstCpuPercent === 'number').length;
        const slowest = Math.max(...list.map((s) => s.presenceMs)).toFixed(0);
        row(`${name} agent ${what}: launch to first presence`, median(list.map((s) => s.presenceMs)), `slowest ${slowest} ms`);
        row(`${name} agent ${what}: launch to first status`, median(list.map((s) => s.firstStatusMs)), `${withCpu} of ${list.length} first samples with a CPU reading`);
      }
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
