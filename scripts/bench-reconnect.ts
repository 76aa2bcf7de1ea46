// `npm run bench:reconnect`: how hard a fleet hits its broker when the broker comes back after an outage, and how
// long a device waits for its broker once it is back. Baselines in the same run: MQTT.js's own fixed-period
// reconnect (what fleetlet turns off) and the exponential full jitter the link used before its waits were bounded by
// the outage's length. Prints the peak number of reconnects per window and the p50/p95 reconnect delay (from the
// broker's return to each client's CONNECT). Part 1 simulates 10,000 devices with the real backoff functions;
// part 2 runs real links and real MQTT.js clients against an embedded broker on a free loopback port.
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { connect } from 'mqtt';
import { ConfigSchema } from '../src/config/schema.js';
import { backoffCeiling, fullJitterDelay, outageCeiling } from '../src/lib/backoff.js';
import { createLogger } from '../src/lib/logger.js';
import { MqttLink } from '../src/link/link.js';
import { Topics } from '../src/protocol/topics.js';

const defaults = ConfigSchema.shape.broker.parse({ url: 'mqtt://127.0.0.1:1', allowPlaintext: true }).reconnect;

function peak(arrivals: number[], windowMs: number): number {
  const buckets = new Map<number, number>();
  for (const at of arrivals) buckets.set(Math.floor(at / windowMs), (buckets.get(Math.floor(at / windowMs)) ?? 0) + 1);
  return Math.max(...buckets.values());
}

const spread = (arrivals: number[]) => Math.max(...arrivals) - Math.min(...arrivals);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const delays = (arrivals: number[]) => `p50 ${seconds(percentile(arrivals, 50))}, p95 ${seconds(percentile(arrivals, 95))}`;

/** When a device whose retries follow `ceiling` first tries after the broker is back at outageMs. */
function firstTryAfter(outageMs: number, ceiling: (attempt: number, troubleMs: number) => number): number {
  let at = 0;
  for (let attempt = 0; at < outageMs; attempt++) at += Math.floor(Math.random() * ceiling(attempt, at));
  return at;
}

function simulate(devices: number, outageMs: number): void {
  const fixedPeriodMs = 1000; // MQTT.js reconnectPeriod default
  const fixed = Array.from({ length: devices }, () => Math.ceil(outageMs / fixedPeriodMs) * fixedPeriodMs);
  const exponential = Array.from({ length: devices }, () => firstTryAfter(outageMs, (attempt) => backoffCeiling(attempt, defaults)));
  const bounded = Array.from({ length: devices }, () => firstTryAfter(outageMs, (attempt, troubleMs) => outageCeiling(attempt, troubleMs, defaults)));
  const after = (arrivals: number[]) => arrivals.map((at) => at - outageMs);
  console.log(`simulated: ${devices} devices, broker back after ${outageMs / 1000} s (backoff base ${defaults.baseMs} ms, cap ${defaults.capMs} ms)`);
  console.log(`  fixed 1 s period        : peak ${peak(fixed, 1000)} reconnects/s, all within ${spread(fixed)} ms`);
  console.log(`  exponential full jitter : peak ${peak(exponential, 1000)} reconnects/s, ${delays(after(exponential))}`);
  console.log(`  bounded by the outage   : peak ${peak(bounded, 1000)} reconnects/s, ${delays(after(bounded))}`);
}

async function startBroker(port = 0) {
  const broker = await Aedes.createBroker();
  const arrivals: number[] = [];
  broker.on('client', () => arrivals.push(performance.now()));
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    broker.handle(socket);
  });
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done));
  return {
    port: (server.address() as AddressInfo).port,
    arrivals,
    close: async () => {
      const closed = new Promise<void>((done) => server.close(() => done()));
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((done) => broker.close(() => done()));
      await closed;
    },
  };
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((done) => setTimeout(done, 20));
  }
}

/** Connects `count` clients, takes the broker away for outageMs, and returns when each came back. */
async function outage(count: number, outageMs: number, makeClient: (url: string, i: number) => { close: () => Promise<void> | void; connected: () => boolean }) {
  let broker = await startBroker();
  const port = broker.port;
  const clients = Array.from({ length: count }, (_, i) => makeClient(`mqtt://127.0.0.1:${port}`, i));
  await waitUntil(() => clients.every((c) => c.connected()), 60_000);
  await broker.close();
  await new Promise((done) => setTimeout(done, outageMs));
  broker = await startBroker(port);
  const backAt = performance.now();
  // The exponential baseline may wait up to its 5 min cap after a long outage.
  await waitUntil(() => broker.arrivals.length >= count, 400_000);
  const arrivals = broker.arrivals.map((at) => at - backAt);
  for (const client of clients) await client.close();
  await broker.close();
  return arrivals;
}

/** An MQTT.js client paced as the link was before: exponential full jitter with no regard to the outage's length. */
function exponentialClient(url: string, i: number) {
  const client = connect(url, { clientId: `exp-${i}`, reconnectPeriod: 0 });
  let attempt = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  client.on('connect', () => (attempt = 0));
  client.on('close', () => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => client.reconnect(), fullJitterDelay(attempt++, defaults));
  });
  client.on('error', () => {});
  return {
    connected: () => client.connected,
    close: () => {
      stopped = true;
      clearTimeout(timer);
      client.end(true);
    },
  };
}

async function real(count: number, outageMs: number): Promise<void> {
  const logger = createLogger({ level: 'silent' });
  const fixed = await outage(count, outageMs, (url, i) => {
    const client = connect(url, { clientId: `fixed-${i}`, reconnectPeriod: 1000 });
    return { connected: () => client.connected, close: () => void client.end(true) };
  });
  const exponential = await outage(count, outageMs, exponentialClient);
  const link = await outage(count, outageMs, (url, i) => {
    const broker = ConfigSchema.shape.broker.parse({ url, allowPlaintext: true });
    const made = new MqttLink({ broker, topics: new Topics(broker.topicRoot), deviceId: `dev-${i}`, groups: [], maxMessageBytes: 4096, bootSequence: 1, fleetletVersion: 'bench', logger });
    made.start();
    return { connected: () => made.state().connected, close: () => made.stop() };
  });
  console.log(`real: ${count} clients on an embedded broker, away for ${outageMs / 1000} s`);
  console.log(`  MQTT.js fixed 1 s             : peak ${peak(fixed, 250)} reconnects per 250 ms, ${delays(fixed)}`);
  console.log(`  exponential full jitter (was) : peak ${peak(exponential, 250)} reconnects per 250 ms, ${delays(exponential)}`);
  console.log(`  fleetlet link (now)           : peak ${peak(link, 250)} reconnects per 250 ms, ${delays(link)}`);
}

simulate(10_000, 5000);
simulate(10_000, 60_000);
await real(200, 5000);
await real(200, 60_000);
