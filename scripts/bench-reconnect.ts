// `npm run bench:reconnect`: how hard a fleet hits its broker when the broker comes back after an outage.
// Baseline in the same run: MQTT.js's own fixed-period reconnect (what fleetlet turns off). Prints the peak
// number of reconnects per window and the ratio. Part 1 simulates 10,000 devices with the real backoff function;
// part 2 runs real links and real MQTT.js clients against an embedded broker on a free loopback port.
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { connect } from 'mqtt';
import { ConfigSchema } from '../src/config/schema.js';
import { fullJitterDelay } from '../src/lib/backoff.js';
import { createLogger } from '../src/lib/logger.js';
import { MqttLink } from '../src/link/link.js';
import { Topics } from '../src/protocol/topics.js';

const defaults = ConfigSchema.shape.broker.parse({ url: 'mqtt://127.0.0.1:1' }).reconnect;

function peak(arrivals: number[], windowMs: number): number {
  const buckets = new Map<number, number>();
  for (const at of arrivals) buckets.set(Math.floor(at / windowMs), (buckets.get(Math.floor(at / windowMs)) ?? 0) + 1);
  return Math.max(...buckets.values());
}

const spread = (arrivals: number[]) => Math.max(...arrivals) - Math.min(...arrivals);

function simulate(devices: number, outageMs: number): void {
  const fixedPeriodMs = 1000; // MQTT.js reconnectPeriod default
  const jitter: number[] = [];
  const fixed: number[] = [];
  for (let i = 0; i < devices; i++) {
    let at = 0;
    for (let attempt = 0; at < outageMs; attempt++) at += fullJitterDelay(attempt, defaults);
    jitter.push(at);
    fixed.push(Math.ceil(outageMs / fixedPeriodMs) * fixedPeriodMs);
  }
  const [p1, p2] = [peak(fixed, 1000), peak(jitter, 1000)];
  console.log(`simulated: ${devices} devices, broker back after ${outageMs / 1000} s (backoff base ${defaults.baseMs} ms, cap ${defaults.capMs} ms)`);
  console.log(`  fixed 1 s period : peak ${p1} reconnects/s, all within ${spread(fixed)} ms`);
  console.log(`  full jitter      : peak ${p2} reconnects/s, spread over ${(spread(jitter) / 1000).toFixed(1)} s`);
  console.log(`  ratio (peak fixed / peak jitter): ${(p1 / p2).toFixed(1)}x lower peak with jitter`);
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
  await waitUntil(() => broker.arrivals.length >= count, 120_000);
  const arrivals = broker.arrivals.map((at) => at - backAt);
  for (const client of clients) await client.close();
  await broker.close();
  return arrivals;
}

async function real(count: number, outageMs: number): Promise<void> {
  const logger = createLogger({ level: 'silent' });
  const fixed = await outage(count, outageMs, (url, i) => {
    const client = connect(url, { clientId: `fixed-${i}`, reconnectPeriod: 1000 });
    return { connected: () => client.connected, close: () => void client.end(true) };
  });
  const jitter = await outage(count, outageMs, (url, i) => {
    const broker = ConfigSchema.shape.broker.parse({ url, allowPlaintext: true });
    const link = new MqttLink({ broker, topics: new Topics(broker.topicRoot), deviceId: `dev-${i}`, groups: [], maxMessageBytes: 4096, bootSequence: 1, fleetletVersion: 'bench', logger });
    link.start();
    return { connected: () => link.state().connected, close: () => link.stop() };
  });
  const [p1, p2] = [peak(fixed, 250), peak(jitter, 250)];
  console.log(`real: ${count} clients on an embedded broker, away for ${outageMs / 1000} s`);
  console.log(`  MQTT.js fixed 1 s : peak ${p1} reconnects per 250 ms, all back within ${spread(fixed).toFixed(0)} ms`);
  console.log(`  fleetlet link     : peak ${p2} reconnects per 250 ms, spread over ${(spread(jitter) / 1000).toFixed(1)} s`);
  console.log(`  ratio (peak fixed / peak link): ${(p1 / p2).toFixed(1)}x lower peak with the link`);
}

simulate(10_000, 60_000);
await real(200, 5000);
