// npm run bench:hub: simulated devices speaking the wire protocol, through a real mosquitto, into `fleetlet hub`
// on SQLite and on PostgreSQL, beside a bare MQTT.js subscriber that only counts the same messages, in the same run.
// Prints messages/s, p50/p99 from publish to commit (to receipt for the bare subscriber), RSS and CPU of this
// process (the hub runs in it), and database bytes per device per day; then the dashboard (scripts/bench-dashboard.ts). Options: --devices N --samples N, and
// --variants "16:0,64:0,64:5" to run the hub on SQLite once per hub.connections:hub.batch.maxWaitMs pair in the same
// run (the first pair is also the PostgreSQL run's; default: the config's defaults).
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config/schema.js';
import { startHub } from '../src/hub/hub-service.js';
import { STATUS_EXAMPLE } from '../src/protocol/status.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';
import { tempDir } from '../test/helpers/paths.js';
import { postgresAvailable, startPostgres } from '../test/helpers/postgres.js';
import { CHROMIUM } from '../test/helpers/browser.js';
import { benchDashboard } from './bench-dashboard.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const DEVICES = arg('devices', 2000);
const SAMPLES = arg('samples', 5);
const PUBLISHERS = 20;
const ROOT = 'fleetlet/v1';
const INTERVAL_S = 30;
const variantIndex = process.argv.indexOf('--variants');
const VARIANTS = (variantIndex > 0 ? process.argv[variantIndex + 1]! : '')
  .split(',')
  .filter(Boolean)
  .map((pair) => {
    const [connections, maxWaitMs] = pair.split(':').map(Number);
    return { connections: connections!, batch: { maxWaitMs: maxWaitMs ?? 0 } };
  });

interface Run {
  target: string;
  messages: number;
  seconds: number;
  latencies: number[];
  rssMiB: number;
  cpuSeconds: number;
  bytesPerDeviceDay?: number;
}

function payload(device: number, seq: number): string {
  return JSON.stringify({ ...STATUS_EXAMPLE, seq, sampledAt: new Date().toISOString(), messageId: randomUUID(), _d: device });
}

/** Each publisher speaks for DEVICES / PUBLISHERS devices, QoS 1 with a window of 100 in flight, as the outbox drains. */
async function publishAll(url: string): Promise<void> {
  const clients: MqttClient[] = await Promise.all(
    Array.from({ length: PUBLISHERS }, (_, p) => mqtt.connectAsync(url, { clientId: `bench-pub-${p}-${randomUUID().slice(0, 6)}`, protocolVersion: 4 })),
  );
  await Promise.all(
    clients.map(async (client, p) => {
      const mine = Array.from({ length: DEVICES }, (_, d) => d).filter((d) => d % PUBLISHERS === p);
      const queue = mine.flatMap((d) => Array.from({ length: SAMPLES }, (_, s) => [d, s + 1] as const));
      for (let i = 0; i < queue.length; i += 100) {
        await Promise.all(queue.slice(i, i + 100).map(([d, s]) => client.publishAsync(`${ROOT}/devices/dev-${d}/status`, payload(d, s), { qos: 1 })));
      }
      await client.endAsync();
    }),
  );
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function measure(target: string, url: string, subscribe: (latencies: number[], done: () => void) => Promise<{ stop(): Promise<number | undefined> }>): Promise<Run> {
  const total = DEVICES * SAMPLES;
  const latencies: number[] = [];
  let finished: () => void = () => {};
  const all = new Promise<void>((resolve) => (finished = resolve));
  const subscriber = await subscribe(latencies, () => latencies.length >= total && finished());
  const cpu = process.cpuUsage();
  let peakRss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 200);
  const started = performance.now();
  await publishAll(url);
  await all;
  const seconds = (performance.now() - started) / 1000;
  clearInterval(rssTimer);
  const used = process.cpuUsage(cpu);
  const bytes = await subscriber.stop();
  const simulatedDays = (SAMPLES * INTERVAL_S) / 86_400;
  return {
    target,
    messages: total,
    seconds,
    latencies,
    rssMiB: peakRss / 1024 / 1024,
    cpuSeconds: (used.user + used.system) / 1e6,
    ...(bytes !== undefined ? { bytesPerDeviceDay: bytes / DEVICES / simulatedDays } : {}),
  };
}

const bareSubscriber = (url: string) => async (latencies: number[], check: () => void) => {
  const client = await mqtt.connectAsync(url, { clientId: `bench-bare-${randomUUID().slice(0, 6)}`, protocolVersion: 5, clean: true });
  await client.subscribeAsync(`${ROOT}/devices/+/status`, { qos: 1 });
  client.on('message', (_topic, message) => {
    latencies.push(Date.now() - Date.parse((JSON.parse(message.toString()) as { sampledAt: string }).sampledAt));
    check();
  });
  return { stop: async () => void (await client.endAsync()) };
};

type Variant = (typeof VARIANTS)[number] | undefined;
const variantName = (variant: Variant) => (variant ? ` (${variant.connections} connections, maxWaitMs ${variant.batch.maxWaitMs})` : '');

const hubSubscriber = (url: string, database: { file: string; url?: string }, name: string, variant: Variant) => async (latencies: number[], check: () => void) => {
  const config = ConfigSchema.parse({
    broker: { url, allowPlaintext: true, topicRoot: ROOT },
    hub: { database, replicaId: name, shareGroup: `bench-${name}`, ...variant },
  });
  const hub = await startHub({ config, log: pino({ level: 'silent' }) });
  await hub.ready();
  const record = hub.metrics.recordCommit.bind(hub.metrics);
  hub.metrics.recordCommit = (outcome, items, ms, nowMs = Date.now()) => {
    for (const item of items) if (item.channel === 'status') latencies.push(nowMs - Date.parse(item.status.sampledAt));
    record(outcome, items, ms, nowMs);
    check();
  };
  return {
    stop: async () => {
      const bytes = await hub.database.sizeBytes();
      await hub.stop();
      return bytes;
    },
  };
};

const broker = await startMosquitto();
const dir = tempDir('fleetlet-bench-hub-');
const runs: Run[] = [];
try {
  runs.push(await measure('bare MQTT.js subscriber (counts only)', broker.url, bareSubscriber(broker.url)));
  for (const [i, variant] of (VARIANTS.length > 0 ? VARIANTS : [undefined]).entries()) {
    const hub = hubSubscriber(broker.url, { file: join(dir.dir, `hub-${i}.db`) }, `sqlite-${i}`, variant);
    runs.push(await measure(`fleetlet hub, SQLite${variantName(variant)}`, broker.url, hub));
  }
  if (postgresAvailable()) {
    const postgres = await startPostgres();
    try {
      const url = await postgres.createDatabase('bench');
      runs.push(await measure(`fleetlet hub, PostgreSQL${variantName(VARIANTS[0])}`, broker.url, hubSubscriber(broker.url, { file: join(dir.dir, 'unused.db'), url }, 'postgres', VARIANTS[0])));
    } finally {
      await postgres.close();
    }
  }
} finally {
  await broker.close();
  dir.cleanup();
}

const bare = runs[0]!.messages / runs[0]!.seconds;
console.log(`${DEVICES} devices x ${SAMPLES} status samples (${DEVICES * SAMPLES} messages), ${PUBLISHERS} publishers, QoS 1`);
console.log('| target | messages/s | ratio to bare | p50 ms | p99 ms | peak RSS MiB | CPU s | DB bytes/device/day |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const run of runs) {
  const rate = run.messages / run.seconds;
  console.log(
    `| ${run.target} | ${rate.toFixed(0)} | ${(rate / bare).toFixed(2)} | ${percentile(run.latencies, 50).toFixed(0)} | ` +
      `${percentile(run.latencies, 99).toFixed(0)} | ${run.rssMiB.toFixed(0)} | ${run.cpuSeconds.toFixed(1)} | ` +
      `${run.bytesPerDeviceDay === undefined ? '-' : (run.bytesPerDeviceDay / 1024 / 1024).toFixed(1) + ' MiB'} |`,
  );
}

// The dashboard over as many devices, in chromium (scripts/bench-dashboard.ts).
if (existsSync(CHROMIUM)) await benchDashboard(DEVICES);
else console.log(`dashboard: not measured, ${CHROMIUM} is missing (apt-get install chromium)`);
