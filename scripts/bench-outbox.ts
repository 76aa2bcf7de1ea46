// `npm run bench:outbox`: what the outbox costs, each figure beside a baseline measured in the same run.
//   enqueue   SqliteOutbox.enqueue / enqueueMany   vs  a bare better-sqlite3 INSERT of the same rows, same commits
//   drain     100,000 queued records to mosquitto   vs  a bare MQTT.js QoS 1 publisher of the same messages, same window
//   disk      bytes written per status record (/proc/self/io write_bytes)  vs  the record's own size
//   memory    RSS of a fresh process while draining vs  the same process idle
//   agent     the built agent draining a large backlog (BENCH_ONLY=agent only; see bench-drain-agent.ts)
import { spawnSync } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import BetterSqlite3 from 'better-sqlite3';
import mqtt from 'mqtt';
import { Drainer, publisherOf, type DrainSource } from '../src/link/drain.js';
import { STATUS_EXAMPLE } from '../src/protocol/status.js';
import { DATABASE_FILE, openDatabase } from '../src/store/db.js';
import { markHistorical } from '../src/store/outbox-records.js';
import { SqliteOutbox } from '../src/store/sqlite-outbox.js';
import { StatusSpool } from '../src/store/status-spool.js';
import type { NewOutboxRecord, OutboxLimits } from '../src/store/outbox.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { benchAgentDrain } from './bench-drain-agent.js';
import { tempDir } from '../test/helpers/paths.js';

const DRAIN_RECORDS = Number(process.env.BENCH_DRAIN_RECORDS ?? 100_000);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const TOPIC = 'bench/devices/d1/status';
const roomy = { maxRows: 10_000_000, maxBytes: 1 << 30 };
const LIMITS: OutboxLimits = {
  budgets: { status: roomy, event: roomy, result: roomy },
  maxTotalBytes: 2 ** 31,
  maxRecordBytes: 256 * 1024,
};

const statusRecord = (n: number): NewOutboxRecord => ({ class: 'status', topic: TOPIC, payload: { ...STATUS_EXAMPLE, seq: n + 1 } });
const eventRecord = (n: number): NewOutboxRecord => ({
  class: 'event',
  topic: 'bench/devices/d1/events',
  payload: { schemaVersion: 1, kind: 'k3s.state', at: new Date().toISOString(), n },
});

/** With `spooled`, status waits in a RAM spool (/dev/shm) as in the agent when its runtimeDir is tmpfs. */
function freshOutbox(spooled = false) {
  const dir = tempDir('fleetlet-bench-outbox-');
  const spool = spooled ? tempDir('fleetlet-bench-spool-', '/dev/shm') : undefined;
  const { db } = openDatabase({ stateDir: dir.dir, fleetletVersion: 'bench' });
  const outbox = new SqliteOutbox(db, { limits: LIMITS, ...(spool ? { statusSpool: new StatusSpool(spool.dir) } : {}) });
  return { dir: { dir: dir.dir, cleanup: () => (dir.cleanup(), spool?.cleanup()) }, db, outbox };
}

/** A bare table like the outbox's, written with plain statements: the baseline for enqueue. */
function bareTable() {
  const dir = tempDir('fleetlet-bench-bare-');
  const db = new BetterSqlite3(join(dir.dir, 'bare.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE q (seq INTEGER PRIMARY KEY, id TEXT, cls TEXT, topic TEXT, body TEXT, qos INT, retain INT, at INT, bytes INT)');
  const insert = db.prepare('INSERT INTO q VALUES (?, ?, ?, ?, ?, 1, 0, ?, ?)');
  let seq = 0;
  const row = (record: NewOutboxRecord) => {
    const body = JSON.stringify(record.payload);
    insert.run(++seq, 'x'.repeat(36), record.class, record.topic, body, Date.now(), body.length);
  };
  return { db, row, close: () => (db.close(), dir.cleanup()) };
}

function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

function timed(work: () => void): number {
  const start = performance.now();
  work();
  return performance.now() - start;
}

function writeBytes(): number {
  const match = /^write_bytes: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
  return Number(match?.[1] ?? NaN);
}

const lines: string[] = [];
const report = (line: string) => {
  lines.push(line);
  console.log(line);
};

function benchEnqueue(): void {
  const cases: { name: string; count: number; batch: number; make: (n: number) => NewOutboxRecord; full: boolean }[] = [
    { name: 'enqueue status, one per commit (NORMAL)', count: 20_000, batch: 1, make: statusRecord, full: false },
    { name: 'enqueue event, one per commit (FULL)', count: 2_000, batch: 1, make: eventRecord, full: true },
    { name: 'enqueueMany status, 100 per commit', count: 100_000, batch: 100, make: statusRecord, full: false },
  ];
  for (const c of cases) {
    const { dir, db, outbox } = freshOutbox();
    const bare = bareTable();
    if (c.full) bare.db.pragma('synchronous = FULL');
    const records = Array.from({ length: c.count }, (_, n) => c.make(n));
    const oursMs = timed(() => {
      for (let i = 0; i < records.length; i += c.batch) {
        if (c.batch === 1) outbox.enqueue(records[i]!);
        else outbox.enqueueMany(records.slice(i, i + c.batch));
      }
    });
    const bareMs = timed(() => {
      const txn = bare.db.transaction((slice: NewOutboxRecord[]) => slice.forEach(bare.row));
      for (let i = 0; i < records.length; i += c.batch) txn(records.slice(i, i + c.batch));
    });
    const [ours, base] = [rate(c.count, oursMs), rate(c.count, bareMs)];
    report(`${c.name}: ${ours} records/s; bare INSERT ${base} rows/s; ratio ${(ours / base).toFixed(2)}`);
    bare.close();
    db.close();
    dir.cleanup();
  }
}

const collectGarbage = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);

/** Runs work while sampling RSS and the JS heap; the heap is measured from a full GC, so its growth is what the work holds. */
async function withRssSampler(
  work: () => Promise<void>,
): Promise<{ ms: number; cpuMs: number; maxMb: number; heapGrowthMb: number }> {
  collectGarbage();
  const heapBefore = process.memoryUsage().heapUsed;
  const cpuBefore = process.cpuUsage();
  let max = process.memoryUsage.rss();
  let maxHeap = heapBefore;
  const timer = setInterval(() => {
    const usage = process.memoryUsage();
    max = Math.max(max, usage.rss);
    maxHeap = Math.max(maxHeap, usage.heapUsed);
  }, 20);
  const start = performance.now();
  try {
    await work();
    const cpu = process.cpuUsage(cpuBefore);
    return {
      ms: performance.now() - start,
      cpuMs: (cpu.user + cpu.system) / 1000,
      maxMb: mb(Math.max(max, process.memoryUsage.rss())),
      heapGrowthMb: mb(maxHeap - heapBefore),
    };
  } finally {
    clearInterval(timer);
  }
}

function fill(outbox: SqliteOutbox): void {
  for (let i = 0; i < DRAIN_RECORDS; i += 1000) {
    outbox.enqueueMany(Array.from({ length: Math.min(1000, DRAIN_RECORDS - i) }, (_, k) => statusRecord(i + k)));
  }
}

/** A bare MQTT.js client keeping `WINDOW` QoS 1 publishes in flight, as a tuned publisher without an outbox would. */
async function publishBare(brokerUrl: string, bodies: string[]): Promise<void> {
  const client = await mqtt.connectAsync(brokerUrl, { clientId: 'bench-bare' });
  let next = 0;
  const worker = async () => {
    while (next < bodies.length) await client.publishAsync(TOPIC, bodies[next++]!, { qos: 1 });
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  await client.endAsync();
}

/**
 * The drain as it read records before (the baseline of the change, in the same run): `pending`, all eight columns
 * and a record object per row, `historical` spliced on in the drainer.
 */
function readingAsBefore(outbox: SqliteOutbox): DrainSource {
  return {
    outgoing: (afterSeq, limit, historicalUpTo) =>
      outbox.pending(afterSeq, limit).map((q) => ({
        seq: q.seq,
        topic: q.topic,
        payload: q.seq <= historicalUpTo ? markHistorical(q.body) : q.body,
        qos: q.qos,
        retain: q.retain,
      })),
    latest: (cls) => outbox.latest(cls),
    lastSeq: () => outbox.lastSeq(),
    acknowledge: (seqs) => outbox.acknowledge(seqs),
    onEnqueue: (listener) => outbox.onEnqueue(listener),
  };
}

async function drainOutbox(brokerUrl: string, outbox: SqliteOutbox, source: DrainSource = outbox): Promise<void> {
  const client = await mqtt.connectAsync(brokerUrl, { clientId: 'bench-outbox' });
  const drainer = new Drainer(source, { window: WINDOW });
  drainer.onConnect(publisherOf(client));
  while (outbox.stats().rows.status > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  drainer.stop();
  await client.endAsync();
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/**
 * Each round runs the bare publisher and the outbox back to back, in alternating order, so that load from elsewhere
 * on the machine hits both alike; the figures are medians over the rounds.
 */
async function benchDrain(brokerUrl: string): Promise<void> {
  const { dir, db, outbox } = freshOutbox();
  type Round = { rate: number; cpuUs: number; maxMb: number; heapGrowthMb: number };
  const bare: Round[] = [];
  const ours: Round[] = [];
  const strings: Round[] = [];
  let size = 0;
  const measured = async (into: Round[], work: () => Promise<void>) => {
    const m = await withRssSampler(work);
    into.push({ rate: rate(DRAIN_RECORDS, m.ms), cpuUs: (m.cpuMs * 1000) / DRAIN_RECORDS, maxMb: m.maxMb, heapGrowthMb: m.heapGrowthMb });
  };
  for (let round = 0; round < ROUNDS; round++) {
    // The bare publisher sends the very same bytes (messageId included), read from a filled outbox; the outbox then
    // drains a filled outbox. Neither holds the other's data while it is measured.
    const runBare = async () => {
      fill(outbox);
      const bodies = outbox.pending(0, DRAIN_RECORDS).map((r) => r.body);
      outbox.acknowledge(outbox.pending(0, DRAIN_RECORDS).map((r) => r.seq));
      size = bodies[0]!.length;
      await measured(bare, () => publishBare(brokerUrl, bodies));
    };
    const runOurs = async () => {
      fill(outbox);
      await measured(ours, () => drainOutbox(brokerUrl, outbox));
    };
    const runStrings = async () => {
      fill(outbox);
      await measured(strings, () => drainOutbox(brokerUrl, outbox, readingAsBefore(outbox)));
    };
    // Each round starts with another of the three, so that load from elsewhere on the machine hits all alike.
    const order = [runBare, runOurs, runStrings];
    for (let k = 0; k < order.length; k++) await order[(round + k) % order.length]!();
    const [o, b, t] = [ours.at(-1)!, bare.at(-1)!, strings.at(-1)!];
    console.log(
      `  round ${round + 1}: outbox ${o.rate} msg/s (${o.cpuUs.toFixed(1)} us CPU/msg), bare ${b.rate} msg/s ` +
        `(${b.cpuUs.toFixed(1)} us CPU/msg), outbox as before ${t.rate} msg/s (${t.cpuUs.toFixed(1)} us CPU/msg)`,
    );
  }
  const bareRate = median(bare.map((r) => r.rate));
  const bareCpu = median(bare.map((r) => r.cpuUs));
  report(
    `drain ${DRAIN_RECORDS} queued records (window ${WINDOW}, ${size} B each, median of ${ROUNDS} rounds): ` +
      `bare MQTT.js QoS 1 publisher of the same messages ${bareRate} msg/s, ${bareCpu.toFixed(1)} us CPU/msg`,
  );
  for (const [name, runs] of [
    ['outbox drain (outgoing: five columns)', ours],
    ['outbox drain as before (pending, all columns)', strings],
  ] as const) {
    const oursRate = median(runs.map((r) => r.rate));
    const oursCpu = median(runs.map((r) => r.cpuUs));
    report(
      `  ${name}: ${oursRate} msg/s, ratio ${(oursRate / bareRate).toFixed(2)} (median of the per-round ratios ` +
        `${median(runs.map((r, i) => r.rate / bare[i]!.rate)).toFixed(2)}); ${oursCpu.toFixed(1)} us CPU/msg, ratio ` +
        `${(oursCpu / bareCpu).toFixed(2)} (per-round ${median(runs.map((r, i) => r.cpuUs / bare[i]!.cpuUs)).toFixed(2)}); ` +
        `RSS max ${median(runs.map((r) => r.maxMb))} MB, JS heap growth max ${median(runs.map((r) => r.heapGrowthMb))} MB`,
    );
  }
  report(
    `  bare publisher (holding its ${DRAIN_RECORDS} messages in memory): RSS max ${median(bare.map((r) => r.maxMb))} MB, ` +
      `heap growth max ${median(bare.map((r) => r.heapGrowthMb))} MB`,
  );
  db.close();
  dir.cleanup();
}

/** What the kernel does within 30 s anyway: write back every dirty page of the database, its WAL and WAL index. */
function flushToDisk(file: string): void {
  for (const path of [file, `${file}-wal`, `${file}-shm`]) {
    const fd = openSync(path, 'r+');
    fdatasyncSync(fd);
    closeSync(fd);
  }
}

/**
 * Disk writes per status record. At the default 30 s interval the kernel writes dirty pages back between two
 * samples; fsyncing the database files after each record reproduces that, so each record pays for its own pages.
 */
async function benchDiskBytes(brokerUrl: string, spooled: boolean): Promise<void> {
  const count = 2000;
  const recordBytes = Buffer.byteLength(JSON.stringify(statusRecord(0).payload));
  const label = spooled ? 'status spool in RAM' : 'every status committed (no spool)';

  const offline = freshOutbox(spooled);
  const file = join(offline.dir.dir, DATABASE_FILE);
  offline.outbox.enqueue(statusRecord(0));
  flushToDisk(file);
  let before = writeBytes();
  for (let n = 1; n <= count; n++) {
    offline.outbox.enqueue(statusRecord(n));
    flushToDisk(file);
  }
  const offlinePerRecord = Math.round((writeBytes() - before) / count);
  report(
    `disk, ${label}, offline (queued): ${offlinePerRecord} B written per status record; the record is ${recordBytes} B; ` +
      `ratio ${(offlinePerRecord / recordBytes).toFixed(1)}`,
  );
  offline.db.close();
  offline.dir.cleanup();

  const online = freshOutbox(spooled);
  const onlineFile = join(online.dir.dir, DATABASE_FILE);
  const client = await mqtt.connectAsync(brokerUrl, { clientId: 'bench-disk' });
  const drainer = new Drainer(online.outbox, { window: WINDOW });
  drainer.onConnect(publisherOf(client));
  before = writeBytes();
  for (let n = 1; n <= count; n++) {
    online.outbox.enqueue(statusRecord(n));
    while (online.outbox.stats().rows.status > 0) await new Promise((resolve) => setImmediate(resolve));
    flushToDisk(onlineFile);
  }
  const onlinePerRecord = Math.round((writeBytes() - before) / count);
  drainer.stop();
  await client.endAsync();
  report(
    `disk, ${label}, online (enqueue, publish, delete): ${onlinePerRecord} B written per status record; ` +
      `ratio to the record ${(onlinePerRecord / recordBytes).toFixed(1)}; ` +
      `${((onlinePerRecord * 2880) / 1024 / 1024).toFixed(1)} MiB a day at one status per 30 s`,
  );
  online.db.close();
  online.dir.cleanup();
}

/**
 * RSS of a fresh process that opens a database holding DRAIN_RECORDS queued records and drains them, so that no
 * benchmark data sits in its memory: idle (database open, client connected) beside the maximum while draining.
 */
async function drainInFreshProcess(brokerUrl: string, mode: 'now' | 'before'): Promise<void> {
  const { dir, db, outbox } = freshOutbox();
  fill(outbox);
  db.close();
  // BENCH_CHILD_FLAGS: V8 flags for the draining process only, e.g. the binary's ("--max-old-space-size=...").
  const flags = (process.env.BENCH_CHILD_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawnSync(process.execPath, [...flags, ...process.execArgv, import.meta.filename, '--drain-child', dir.dir, brokerUrl, mode], {
    encoding: 'utf8',
    timeout: 600_000,
  });
  dir.cleanup();
  const result = /^idle (\d+) max (\d+) rate (\d+)$/m.exec(child.stdout);
  if (!result) throw new Error(`drain child failed: ${child.stderr}`);
  const [idle, max, childRate] = [Number(result[1]), Number(result[2]), Number(result[3])];
  console.log(/^parts .*$/m.exec(child.stdout)?.[0]);
  report(
    `RSS of a fresh process draining ${DRAIN_RECORDS} records (${mode}${flags.length ? `, ${flags.join(' ')}` : ''}): max ${max} MB; the same process idle (database open, ` +
      `connected) ${idle} MB; ratio ${(max / idle).toFixed(2)} (${childRate} msg/s)`,
  );
}

/** Where the RSS is (MB): anonymous vs file-backed pages, and the JS heap, Buffers and other external memory. */
function memoryParts(): Record<string, number> {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? NaN);
  const usage = process.memoryUsage();
  return {
    rss: mb(usage.rss),
    rssAnon: Math.round(kb('RssAnon') / 1024),
    rssFile: Math.round(kb('RssFile') / 1024),
    rssShmem: Math.round(kb('RssShmem') / 1024),
    heapTotal: mb(usage.heapTotal),
    heapUsed: mb(usage.heapUsed),
    external: mb(usage.external),
    arrayBuffers: mb(usage.arrayBuffers),
  };
}

async function drainChild(stateDir: string, brokerUrl: string, mode: string): Promise<void> {
  const { db } = openDatabase({ stateDir, fleetletVersion: 'bench' });
  const outbox = new SqliteOutbox(db, { limits: LIMITS });
  const client = await mqtt.connectAsync(brokerUrl, { clientId: 'bench-child' });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const idle = process.memoryUsage.rss();
  const idleParts = memoryParts();
  let max = idle;
  let atMax = idleParts;
  const timer = setInterval(() => {
    const rss = process.memoryUsage.rss();
    if (rss > max) [max, atMax] = [rss, memoryParts()];
  }, 20);
  const drainer = new Drainer(mode === 'before' ? readingAsBefore(outbox) : outbox, { window: WINDOW });
  const start = performance.now();
  drainer.onConnect(publisherOf(client));
  while (outbox.stats().rows.status > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const ms = performance.now() - start;
  clearInterval(timer);
  drainer.stop();
  await client.endAsync();
  db.close();
  console.log(`idle ${mb(idle)} max ${mb(max)} rate ${rate(DRAIN_RECORDS, ms)}`);
  console.log(`parts idle ${JSON.stringify(idleParts)} at max ${JSON.stringify(atMax)}`);
}

if (process.argv[2] === '--drain-child') {
  await drainChild(process.argv[3]!, process.argv[4]!, process.argv[5]!);
} else if (process.env.BENCH_ONLY === 'agent') {
  // Its own broker (with persistence, restarted in the middle); not part of a full run: it needs the built binary.
  for (const line of await benchAgentDrain()) report(line);
} else {
  const broker = await startMosquitto({ globalLines: ['max_queued_messages 0'] });
  try {
    report(`node ${process.version}, ${new Date().toISOString()}`);
    // BENCH_ONLY=enqueue|drain|memory|disk runs one part.
    const only = process.env.BENCH_ONLY;
    if (!only || only === 'enqueue') benchEnqueue();
    if (!only || only === 'drain') await benchDrain(broker.url);
    if (!only || only === 'memory') {
      await drainInFreshProcess(broker.url, 'now');
      await drainInFreshProcess(broker.url, 'before');
    }
    if (!only || only === 'disk') {
      await benchDiskBytes(broker.url, false);
      await benchDiskBytes(broker.url, true);
    }
  } finally {
    await broker.close();
  }
}
