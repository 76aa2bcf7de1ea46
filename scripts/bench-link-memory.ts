// `npm run bench:link-memory`: does the link leak across reconnects? A device on a flaky mobile link may
// reconnect thousands of times between restarts. The broker (embedded, free loopback port, in this process) drops
// every connection right after the device's birth; the link reconnects at once (zero backoff). Prints the heap
// growth per reconnect after a warm-up, beside a baseline measured the same way in the same run: bare MQTT.js
// clients (one per connection, as the link makes them) publishing the same birth, so the broker's and MQTT.js's
// own share is visible.
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import { connect, type MqttClient } from 'mqtt';
import { ConfigSchema } from '../src/config/schema.js';
import { createLogger } from '../src/lib/logger.js';
import { MqttLink } from '../src/link/link.js';
import { Topics } from '../src/protocol/topics.js';

const WARM_UP = 50;
const CYCLES = Number(process.env.BENCH_CYCLES ?? 1000);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('run with node --expose-gc (npm run bench:link-memory does)');
  process.exit(1);
}

const aedes = await Aedes.createBroker();
const sockets = new Set<Socket>();
let births = 0;
aedes.on('publish', (packet, client) => {
  if (!client || !packet.topic.endsWith('/presence')) return;
  births += 1;
  // Drop the connection from the broker side as soon as the device announced itself.
  setImmediate(() => client.conn.destroy());
});
const server = createServer((socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  aedes.handle(socket);
});
await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
const url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;

async function cycles(target: number): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (births < target) {
    if (Date.now() > deadline) throw new Error(`only ${births} of ${target} connects in 5 minutes`);
    await new Promise((done) => setTimeout(done, 20));
  }
}

function heapKiB(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed / 1024;
}

/** Runs WARM_UP + CYCLES connects; returns heap growth per connect after the warm-up (KiB) and the time taken. */
async function measure(start: () => void, stop: () => Promise<void>): Promise<{ perConnect: number; seconds: number }> {
  births = 0;
  const began = performance.now();
  start();
  await cycles(WARM_UP);
  const before = heapKiB();
  await cycles(WARM_UP + CYCLES);
  const after = heapKiB();
  const seconds = (performance.now() - began) / 1000;
  await stop();
  return { perConnect: (after - before) / CYCLES, seconds };
}

const birth = JSON.stringify({ schemaVersion: 1, state: 'online', bootSequence: 1, at: new Date().toISOString(), fleetletVersion: 'bench' });
let bare: MqttClient | undefined;
let bareStopped = false;
const bareConnect = () => {
  if (bareStopped) return;
  const client = connect(url, { clientId: 'bench-bare', clean: false, reconnectPeriod: 0, keepalive: 30 });
  bare = client;
  client.on('connect', () => {
    void client.subscribeAsync(['fleetlet/v1/devices/bench-bare/commands'], { qos: 1 })
      .then(() => client.publishAsync('fleetlet/v1/devices/bench-bare/presence', birth, { qos: 1, retain: true }))
      .catch(() => {});
  });
  client.on('error', () => {});
  client.on('close', () => {
    client.end(true);
    setImmediate(bareConnect);
  });
};
const baseline = await measure(bareConnect, async () => {
  bareStopped = true;
  await bare?.endAsync(true);
});

const link = new MqttLink({
  broker: ConfigSchema.shape.broker.parse({ url, allowPlaintext: true }),
  topics: new Topics('fleetlet/v1'),
  deviceId: 'bench-device',
  groups: ['a', 'b'],
  maxMessageBytes: 4096,
  bootSequence: 1,
  fleetletVersion: 'bench',
  logger: createLogger({ level: 'silent' }),
  random: () => 0,
});
const measured = await measure(() => link.start(), () => link.stop());

for (const socket of sockets) socket.destroy();
await new Promise<void>((done) => aedes.close(() => done()));
server.close();

console.log(`heap growth per reconnect after ${WARM_UP} warm-up connects, over ${CYCLES} more (broker in this process)`);
console.log(`  bare MQTT.js clients (baseline): ${baseline.perConnect.toFixed(3)} KiB per reconnect (${baseline.seconds.toFixed(1)} s)`);
console.log(`  fleetlet link:                   ${measured.perConnect.toFixed(3)} KiB per reconnect (${measured.seconds.toFixed(1)} s)`);
console.log(`  difference: ${(measured.perConnect - baseline.perConnect).toFixed(3)} KiB per reconnect`);
