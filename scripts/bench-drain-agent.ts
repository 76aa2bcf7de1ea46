// The real agent draining a large backlog (`BENCH_ONLY=agent npm run bench:outbox`): the built single binary
// (BENCH_BINARY, default dist/fleetlet-linux-x64; `PACKAGE_ARCHES=x64 npm run package` builds it) or, with
// BENCH_AGENT_BUNDLE=1, dist/fleetlet.cjs run by this node. Its state database is filled with BENCH_AGENT_RECORDS
// (100,000) queued records before it starts, while the broker is down; then the broker comes up and the agent drains.
// Measured, each against the same agent in the same run:
// BENCH_AGENT_NODE_OPTIONS gives the agent V8 flags through NODE_OPTIONS (none by default); the rest of the agent's
// environment is the benchmark's own, so run it with `MALLOC_ARENA_MAX=1` as the agent's systemd unit does.
//   cpu        the agent's CPU time (user + system) per record, from the broker coming up to the last record arriving
//   memory     VmRSS idle (database open, link down, BENCH_AGENT_IDLE_SECONDS after start: 8; 840 for an agent that
//              has run long enough to have paged in its compilers, as a device offline for days has) vs its maximum while draining, with where it is
//              (RssAnon/RssFile) at both moments, and again 5 s after the drain
//   sampling   the status samples' `sampledAt`: the largest gap between two, against the interval (5 s)
//   commands   a signed ping sent halfway through: time to its first and its last result
//   delivery   the broker is restarted BENCH_AGENT_RESTARTS times (2) in the middle; every record must arrive, and a
//              record that arrives twice must carry the same messageId (the crash test's checks, at this size)
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { STATUS_EXAMPLE } from '../src/protocol/status.js';
import { Topics } from '../src/protocol/topics.js';
import { openDatabase } from '../src/store/db.js';
import { SqliteOutbox } from '../src/store/sqlite-outbox.js';
import { writeAgentConfig } from '../test/helpers/agent-config.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { tempDir } from '../test/helpers/paths.js';
import { sendPing, sandboxOperatorKey } from './sandbox-operator.js';

const RECORDS = Number(process.env.BENCH_AGENT_RECORDS ?? 100_000);
const RESTARTS = Number(process.env.BENCH_AGENT_RESTARTS ?? 2);
const IDLE_SECONDS = Number(process.env.BENCH_AGENT_IDLE_SECONDS ?? 8);
const INTERVAL_SECONDS = 5;
/** The agent's `broker.inflightWindow` (its default is 200; BENCH_ONLY=drain uses 500). */
const WINDOW = Number(process.env.BENCH_WINDOW ?? 500);
const DEVICE_ID = 'bench-drain-agent';
const BACKLOG_TOPIC = `bench/backlog/${DEVICE_ID}/status`;
const MiB = 1024 * 1024;
const huge = { maxRows: 100_000_000, maxBytes: 2 ** 40 };

/** The process's CPU time (user + system) in microseconds, from /proc/<pid>/stat (clock ticks of 10 ms). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

function procStatus(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

/**
 * Where the RSS is, from /proc/<pid>/smaps: the brk heap (glibc's main malloc arena), anonymous mappings up to 1 MiB
 * (V8's heap pages are 256 KiB each), larger ones (malloc's thread arenas, V8's reservations), and the pages of
 * files: the executable itself (its code, paged in as it runs) and every other file (SQLite's -shm, the addon).
 */
function rssParts(pid: number): Record<string, number> {
  const parts: Record<string, number> = { brkHeap: 0, anonUpTo1MiB: 0, anonLarger: 0, executable: 0, otherFiles: 0 };
  const executable = readlinkSync(`/proc/${pid}/exe`);
  let bucket: string | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (header) {
      const size = parseInt(header[2]!, 16) - parseInt(header[1]!, 16);
      const path = header[3]!;
      bucket =
        path === '[heap]' ? 'brkHeap'
        : path === '' ? (size <= MiB ? 'anonUpTo1MiB' : 'anonLarger')
        : path === executable ? 'executable'
        : path.startsWith('/') ? 'otherFiles'
        : undefined;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && bucket) parts[bucket]! += Number(rss[1]) * 1024;
  }
  return Object.fromEntries(Object.entries(parts).map(([name, bytes]) => [name, Math.round(bytes / MiB)]));
}

const mib = (bytes: number) => (bytes / MiB).toFixed(1);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Fills the agent's state database with RECORDS status records; returns their messageIds by their payload seq. */
function fillBacklog(stateDir: string): string[] {
  const { db } = openDatabase({ stateDir, fleetletVersion: 'bench' });
  const outbox = new SqliteOutbox(db, { limits: { budgets: { status: huge, event: huge, result: huge }, maxTotalBytes: 2 ** 40, maxRecordBytes: 65536 } });
  const ids: string[] = new Array<string>(RECORDS + 1);
  for (let i = 0; i < RECORDS; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, RECORDS - i) }, (_, k) => ({
      class: 'status' as const,
      topic: BACKLOG_TOPIC,
      payload: { ...STATUS_EXAMPLE, seq: i + k + 1 },
    }));
    for (const record of outbox.enqueueMany(batch)) ids[record.payload.seq as number] = record.messageId;
  }
  db.close();
  return ids;
}

/** Every backlog record by its seq: lost, duplicated with its own id, or (never acceptable) sent under another id. */
class DeliveryCheck {
  private readonly seen: Uint8Array;
  unique = 0;
  duplicates = 0;
  wrongIds = 0;

  constructor(private readonly ids: string[]) {
    this.seen = new Uint8Array(ids.length);
  }

  add(payload: Buffer): void {
    // Cheaper than JSON.parse for a million messages: the fill wrote `"seq":N` and the outbox appended the messageId.
    const text = payload.toString('latin1');
    const seq = Number(/"seq":(\d+)/.exec(text)?.[1]);
    const at = text.lastIndexOf('"messageId":"') + 13;
    const id = text.slice(at, text.indexOf('"', at));
    if (this.ids[seq] !== id) this.wrongIds += 1;
    else if (this.seen[seq]) this.duplicates += 1;
    else {
      this.seen[seq] = 1;
      this.unique += 1;
    }
  }
}

export async function benchAgentDrain(): Promise<string[]> {
  const binary = process.env.BENCH_BINARY ?? join(import.meta.dirname, '../dist/fleetlet-linux-x64');
  const useBundle = process.env.BENCH_AGENT_BUNDLE === '1';
  const program = useBundle ? [process.execPath, join(import.meta.dirname, '../dist/fleetlet.cjs')] : [binary];
  if (!existsSync(program.at(-1)!)) throw new Error(`${program.at(-1)} is missing: build it first (npm run package or npm run bundle)`);
  const work = tempDir('fleetlet-bench-agent-drain-');
  const persistence = tempDir('fleetlet-bench-agent-broker-');
  // Persistence and a persistent subscriber session: what the broker holds for the subscriber survives the restarts,
  // so a record missing at the end is one the agent lost.
  const broker = await startMosquitto({ globalLines: ['max_queued_messages 0'], persistenceDir: persistence.dir });
  const lines: string[] = [];
  try {
    const operator = sandboxOperatorKey(work.dir);
    const config = writeAgentConfig(work.dir, {
      device: { id: DEVICE_ID },
      broker: { url: broker.url, allowPlaintext: true, inflightWindow: WINDOW },
      telemetry: { intervalSeconds: INTERVAL_SECONDS, http: { enabled: false } },
      commands: { trustedKeys: [operator.trusted] },
      limits: { outbox: { status: huge, event: huge, result: huge, maxTotalBytes: 2 ** 40 } },
      log: { level: 'warn' },
    });
    const fillStarted = performance.now();
    const ids = fillBacklog(join(work.dir, 'state'));
    console.log(`  filled ${RECORDS} records in ${((performance.now() - fillStarted) / 1000).toFixed(0)} s`);

    const check = new DeliveryCheck(ids);
    const sampledAt: number[] = [];
    const results: { status: string; at: number }[] = [];
    const topics = new Topics('fleetlet/v1');
    const fleet = await mqtt.connectAsync(broker.url, { clientId: 'bench-fleet', clean: false, reconnectPeriod: 200 });
    fleet.on('message', (topic, payload) => {
      if (topic === BACKLOG_TOPIC) check.add(payload);
      else if (topic.endsWith('/status')) sampledAt.push(Date.parse((JSON.parse(payload.toString()) as { sampledAt: string }).sampledAt));
      else if (topic.endsWith('/results')) results.push({ status: (JSON.parse(payload.toString()) as { status: string }).status, at: performance.now() });
    });
    await fleet.subscribeAsync([BACKLOG_TOPIC, topics.device(DEVICE_ID, 'status'), topics.device(DEVICE_ID, 'results')], { qos: 1 });
    await broker.stop();

    // BENCH_AGENT_NODE_OPTIONS: V8 heap flags to try on the agent (e.g. "--max-old-space-size=64 --max-semi-space-size=1").
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('FLEETLET_')));
    env.NODE_OPTIONS = process.env.BENCH_AGENT_NODE_OPTIONS ?? '';
    const agent = spawn(program[0]!, [...program.slice(1), 'agent', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env });
    let stderr = '';
    agent.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
    try {
      await sleep(IDLE_SECONDS * 1000);
      if (agent.exitCode !== null) throw new Error(`agent exited ${agent.exitCode}: ${stderr}`);
      const idle = procStatus(agent.pid!);
      const idleParts = rssParts(agent.pid!);
      let max = idle;
      let maxParts = idleParts;
      const sampler = setInterval(() => {
        const now = procStatus(agent.pid!);
        if (now.rss <= max.rss) return;
        if (now.rss > max.rss + MiB) maxParts = rssParts(agent.pid!);
        max = now;
      }, 100);
      const cpuBefore = cpuMicros(agent.pid!);
      await broker.restart();
      const started = performance.now();
      let pingSentAt: number | undefined;
      let restarts = 0;
      while (check.unique < RECORDS) {
        if (agent.exitCode !== null) throw new Error(`agent exited ${agent.exitCode}: ${stderr}`);
        if (performance.now() - started > 1_800_000) throw new Error(`drain stuck at ${check.unique} of ${RECORDS}`);
        if (pingSentAt === undefined && check.unique >= RECORDS / 2) {
          pingSentAt = performance.now();
          await sendPing(fleet, topics, DEVICE_ID, operator.file);
        }
        if (restarts < RESTARTS && check.unique >= ((restarts + 1) * RECORDS) / (RESTARTS + 1)) {
          restarts += 1;
          await broker.restart();
        }
        await sleep(20);
      }
      const drainSeconds = (performance.now() - started) / 1000;
      const cpuPerRecord = (cpuMicros(agent.pid!) - cpuBefore) / RECORDS;
      clearInterval(sampler);
      await sleep(5000);
      const after = procStatus(agent.pid!);
      const gaps = sampledAt.sort((a, b) => a - b).slice(1).map((at, i) => at - sampledAt[i]!);
      const late = Math.max(0, ...gaps) / 1000 - INTERVAL_SECONDS;
      const first = results[0];
      const last = results.at(-1);
      lines.push(
        `agent (${useBundle ? 'bundle run by node' : 'single binary'}, NODE_OPTIONS "${env.NODE_OPTIONS}") draining ${RECORDS} records (window ${WINDOW}): ${Math.round(RECORDS / drainSeconds)} msg/s ` +
          `over ${drainSeconds.toFixed(1)} s, broker restarted ${restarts} times; agent CPU ${cpuPerRecord.toFixed(1)} us a record`,
        `  RSS idle ${mib(idle.rss)} MiB (anon ${mib(idle.anon)}, file ${mib(idle.file)}); max while draining ${mib(max.rss)} MiB ` +
          `(anon ${mib(max.anon)}, file ${mib(max.file)}): +${mib(max.rss - idle.rss)} MiB; 5 s after ${mib(after.rss)} MiB`,
        `  RSS by kind in MiB, idle ${JSON.stringify(idleParts)}, near the max ${JSON.stringify(maxParts)}`,
        `  delivery: ${check.unique} of ${RECORDS} arrived, ${RECORDS - check.unique} lost, ${check.duplicates} duplicates ` +
          `(same messageId), ${check.wrongIds} under another messageId`,
        `  sampling: ${sampledAt.length} status samples, largest gap ${(Math.max(0, ...gaps) / 1000).toFixed(2)} s ` +
          `(interval ${INTERVAL_SECONDS} s: ${late.toFixed(2)} s late at most)`,
        `  command: ping sent halfway, ${first && pingSentAt ? `first result (${first.status}) after ${Math.round(first.at - pingSentAt)} ms` : 'no result'}` +
          `${last && pingSentAt && last !== first ? `, last (${last.status}) after ${Math.round(last.at - pingSentAt)} ms` : ''}`,
      );
    } finally {
      agent.kill('SIGTERM');
      if (agent.exitCode === null) await new Promise((resolve) => agent.once('exit', resolve));
      await fleet.endAsync(true);
    }
  } finally {
    await broker.close();
    persistence.cleanup();
    work.cleanup();
  }
  return lines;
}
