// `npm run bench:k3s`: what supervising and installing k3s costs, each figure beside a baseline measured in the
// same run.
//   install     verified download (stream, sha256, size bound, fsync) of a release binary from a local mirror
//               vs  a bare fetch of the same bytes into a file
//   log lines   LogRing + failure classification of k3s log lines  vs  splitting the same text into lines
//   supervision CPU time of this process while it supervises an idle fake k3s (healthz every 5 s, log poll
//               every 500 ms)  vs  the same process idle for the same time
import { createWriteStream, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConfigSchema } from '../src/config/schema.js';
import { buildAgentInvocation } from '../src/k3s/args.js';
import { K3sInstaller } from '../src/k3s/installer.js';
import { classifyLine } from '../src/k3s/log-patterns.js';
import { LogRing } from '../src/k3s/log-ring.js';
import { K3sSupervisor } from '../src/k3s/supervisor.js';
import { createLogger } from '../src/lib/logger.js';
import { FAKE_K3S } from '../test/helpers/fake-k3s.js';
import { tempDir } from '../test/helpers/paths.js';
import { freePort } from '../test/helpers/ports.js';
import { sha256, startReleaseServer } from '../test/helpers/release-server.js';

const BINARY_MIB = Number(process.env.BENCH_BINARY_MIB ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LOG_LINES = Number(process.env.BENCH_LOG_LINES ?? 200_000);
const SUPERVISE_SECONDS = Number(process.env.BENCH_SUPERVISE_SECONDS ?? 20);
const VERSION = 'v1.36.3+k3s1';

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const row = (what: string, value: string, baseline: string, note = '') =>
  console.log(`${what.padEnd(34)} ${value.padStart(16)}   baseline ${baseline.padStart(16)}   ${note}`);

async function benchInstall(): Promise<void> {
  const server = await startReleaseServer();
  const { dir, cleanup } = tempDir('fleetlet-bench-install-');
  try {
    const binary = Buffer.alloc(BINARY_MIB * 1024 * 1024);
    for (let i = 0; i < binary.length; i += 4096) binary.writeUInt32LE(i, i);
    server.publish(VERSION, { k3s: binary });
    const installer = new K3sInstaller({
      binaryPath: join(dir, 'k3s'),
      arch: 'amd64',
      artifactUrl: server.artifactUrl,
      channel: 'stable',
      channelUrl: server.channelUrl,
      version: VERSION,
    });
    const verified: number[] = [];
    const bare: number[] = [];
    const expected = sha256(binary);
    for (let round = 0; round < ROUNDS; round++) {
      let start = performance.now();
      const temp = await installer.fetchBinary(VERSION, { sha256: expected });
      verified.push(performance.now() - start);
      rmSync(temp.path);
      start = performance.now();
      const response = await fetch(`${server.artifactUrl}/${encodeURIComponent(VERSION)}/k3s`);
      await pipeline(Readable.fromWeb(response.body! as never), createWriteStream(join(dir, 'bare')));
      bare.push(performance.now() - start);
      rmSync(join(dir, 'bare'));
    }
    const mibPerSecond = (ms: number) => `${(BINARY_MIB / (ms / 1000)).toFixed(0)} MiB/s`;
    row(`install: ${BINARY_MIB} MiB, median of ${ROUNDS}`, mibPerSecond(median(verified)), mibPerSecond(median(bare)), 'verified vs bare fetch');
  } finally {
    await server.close();
    cleanup();
  }
}

function benchLogLines(): void {
  const samples = [
    'time="2026-08-20T10:00:00Z" level=info msg="Waiting to retrieve agent configuration; server is not ready: /var/lib/rancher/k3s/agent/serving-kubelet.crt: Node password rejected, duplicate hostname or contents of \'/etc/rancher/node/password\' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag"',
    'I0820 10:00:00.000000    1234 kubelet_node_status.go:75] "Successfully registered node" node="pi-01"',
    'time="2026-08-20T10:00:00Z" level=info msg="Tunnel authorizer set Kubelet Port 0.0.0.0:10250"',
    'I0820 10:00:00.000000    1234 reconciler.go:352] "operationExecutor.VerifyControllerAttachedVolume started for volume" volume="kube-api-access"',
  ];
  const text = Array.from({ length: LOG_LINES }, (_, i) => samples[i % samples.length]).join('\n');
  let start = performance.now();
  const ring = new LogRing(500);
  let problems = 0;
  for (const line of text.split('\n')) {
    ring.push(line);
    if (classifyLine(line)) problems++;
  }
  const classified = performance.now() - start;
  start = performance.now();
  const plain: string[] = [];
  for (const line of text.split('\n')) plain.push(line);
  const split = performance.now() - start;
  const rate = (ms: number) => `${Math.round(LOG_LINES / (ms / 1000)).toLocaleString('en')} lines/s`;
  row(`log lines: ${LOG_LINES.toLocaleString('en')}`, rate(classified), rate(split), `ring + classify vs split (${problems} problems)`);
}

async function benchSupervision(): Promise<void> {
  const { dir, cleanup } = tempDir('fleetlet-bench-supervise-');
  const healthzPort = await freePort();
  const k3s = ConfigSchema.parse({
    broker: { url: 'mqtts://broker.example:8883' },
    k3s: { serverUrl: 'https://10.0.0.1:6443', token: 'K10bench::node:bench', dataDir: join(dir, 'data'), disableApiserverLb: true, kubeletArgs: [`healthz-port=${healthzPort}`] },
  }).k3s;
  const idle = async () => {
    const before = process.cpuUsage();
    await new Promise((resolve) => setTimeout(resolve, SUPERVISE_SECONDS * 1000));
    const used = process.cpuUsage(before);
    return (used.user + used.system) / 1000;
  };
  const baselineMs = await idle();
  const supervisor = new K3sSupervisor({
    binaryPath: FAKE_K3S,
    invocation: () => buildAgentInvocation(k3s),
    baseEnv: { ...process.env, FAKE_K3S_AS_ROOT: '1', FAKE_K3S_NODE_CONFIG_PATH: join(dir, 'node') },
    passEnv: ['FAKE_K3S_*'],
    workDir: join(dir, 'work'),
    healthzUrl: `http://127.0.0.1:${healthzPort}/healthz`,
    sink: { emit: () => {} },
    logger: createLogger({ level: 'silent' }),
  });
  await supervisor.start();
  const supervisedMs = await idle();
  const state = supervisor.status().state;
  await supervisor.stopK3s('benchmark');
  await supervisor.stop();
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024;
  cleanup();
  const perMinute = (ms: number) => `${((ms / SUPERVISE_SECONDS) * 60).toFixed(1)} ms CPU/min`;
  row(`supervision: ${SUPERVISE_SECONDS} s (${state})`, perMinute(supervisedMs), perMinute(baselineMs), `supervising vs idle; RSS now ${rss.toFixed(0)} MB`);
}

console.log(`fleetlet k3s benchmarks (node ${process.version}, ${process.arch})`);
// Supervision first: the idle baseline is only fair in a process that has not done anything yet.
await benchSupervision();
await benchInstall();
benchLogLines();
