// `npx tsx scripts/bench-memory-drain.ts BINARY...`: the RSS of built agents draining a backlog, side by side in one
// run. Each binary gets its own state database holding BENCH_DRAIN_RECORDS (100,000) queued status records (written
// here with the same store code), then all start at once against one local mosquitto; VmRSS and VmHWM are read from
// /proc every 250 ms until each has sent everything (the broker counts the messages) or BENCH_SECONDS (300) pass.
// Compares V8 limits built into the binaries (e.g. one built with --max-old-space-size in packaging/sea-config.json).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { connectAsync } from 'mqtt';
import { STATUS_EXAMPLE } from '../src/protocol/status.js';
import { openDatabase } from '../src/store/db.js';
import { SqliteOutbox } from '../src/store/sqlite-outbox.js';
import { writeAgentConfig } from '../test/helpers/agent-config.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { tempDir } from '../test/helpers/paths.js';

const MiB = 1024 * 1024;
const records = Number(process.env.BENCH_DRAIN_RECORDS ?? 100_000);
const seconds = Number(process.env.BENCH_SECONDS ?? 300);
const binaries = process.argv.slice(2);
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('FLEETLET_')));
const roomy = { maxRows: 10_000_000, maxBytes: 1 << 30 };

function kib(pid: number, field: string): number {
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
}

const broker = await startMosquitto();
const { dir, cleanup } = tempDir('fleetlet-bench-drain-');
const counter = await connectAsync(broker.url, { reconnectPeriod: 0 });
const received = new Map<string, number>();
counter.on('message', (topic) => received.set(topic, (received.get(topic) ?? 0) + 1));
await counter.subscribeAsync('bench-drain/+/status', { qos: 0 });
try {
  const agents = binaries.map((binary, index) => {
    const id = `drain-${index}`;
    const home = join(dir, id);
    const config = writeAgentConfig(home, {
      device: { id },
      broker: { url: broker.url, allowPlaintext: true },
      telemetry: { intervalSeconds: 3600, http: { enabled: false } },
      log: { level: 'warn' },
    });
    const { db } = openDatabase({ stateDir: join(home, 'state'), fleetletVersion: 'bench' });
    const outbox = new SqliteOutbox(db, { limits: { budgets: { status: roomy, event: roomy, result: roomy }, maxTotalBytes: 2 ** 31, maxRecordBytes: 256 * 1024 } });
    const topic = `bench-drain/${id}/status`;
    for (let i = 0; i < records; i += 1000) {
      outbox.enqueueMany(Array.from({ length: Math.min(1000, records - i) }, (_, k) => ({ class: 'status' as const, topic, payload: { ...STATUS_EXAMPLE, seq: i + k + 1 } })));
    }
    db.close();
    return { binary, topic, config, maxRss: 0, drainedAfter: NaN };
  });
  const started = Date.now();
  const children = agents.map((agent) => spawn(agent.binary, ['agent', '--config', agent.config], { stdio: 'ignore', env: childEnv }));
  while (Date.now() - started < seconds * 1000 && agents.some((a) => Number.isNaN(a.drainedAfter))) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    agents.forEach((agent, index) => {
      if (!Number.isNaN(agent.drainedAfter)) return;
      if (children[index]!.exitCode !== null) throw new Error(`${agent.binary} exited ${children[index]!.exitCode}`);
      agent.maxRss = Math.max(agent.maxRss, kib(children[index]!.pid!, 'VmHWM'));
      if ((received.get(agent.topic) ?? 0) >= records) agent.drainedAfter = (Date.now() - started) / 1000;
    });
  }
  const idle = agents.map((_, index) => kib(children[index]!.pid!, 'VmRSS'));
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(children.map((child) => new Promise((resolve) => child.once('exit', resolve))));
  console.log(`${records} queued status records drained by each agent, side by side`);
  console.log('| binary | peak RSS (VmHWM) MiB | RSS at the end MiB | records sent | drained in s |');
  console.log('|---|---|---|---|---|');
  agents.forEach((agent, index) =>
    console.log(
      `| ${basename(agent.binary)} | ${(agent.maxRss / MiB).toFixed(1)} | ${(idle[index]! / MiB).toFixed(1)} | ` +
        `${received.get(agent.topic) ?? 0} | ${Number.isNaN(agent.drainedAfter) ? `not within ${seconds}` : agent.drainedAfter.toFixed(1)} |`,
    ),
  );
} finally {
  await counter.endAsync(true);
  await broker.close();
  cleanup();
}
