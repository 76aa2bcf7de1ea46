// `npm start`: the whole system on one machine, with nothing to install. An embedded MQTT broker (aedes) on a
// free loopback port, a real agent with its state in ./.fleetlet-dev, and a live view of what the fleet sees on
// the broker: presence, status, events and results. Ctrl-C stops the agent (which says goodbye with its offline
// presence), then the broker. k3s is configured with everything inside ./.fleetlet-dev and its download URLs on
// an unused loopback port, so it shows its honest state on this machine and never touches the system.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { Aedes } from 'aedes';
import { connectAsync } from 'mqtt';
import { stringify } from 'yaml';
import type { z } from 'zod';
import { errorMessage } from '../src/lib/errors.js';
import { EventSchema } from '../src/protocol/event.js';
import { CommandResultSchema } from '../src/protocol/result.js';
import { findMosquitto, startMosquittoBroker, startSandboxHub, type SandboxHub } from './sandbox-hub.js';
import { sandboxOperatorKey, sandboxPace, sendPing } from './sandbox-operator.js';
import { compactLogLine, screenLines } from './sandbox-screen.js';
import { InventorySchema } from '../src/protocol/inventory.js';
import { PresenceSchema } from '../src/protocol/presence.js';
import { StatusSchema } from '../src/protocol/status.js';
import { Topics } from '../src/protocol/topics.js';

const ROOT_DIR = resolve(import.meta.dirname, '..');
/** FLEETLET_SANDBOX_DIR moves the state elsewhere (the tests use a temporary directory). */
const DEV_DIR = resolve(process.env.FLEETLET_SANDBOX_DIR ?? join(ROOT_DIR, '.fleetlet-dev'));
const DEVICE_ID = 'dev-sandbox';
const STOP_TIMEOUT_MS = 15_000;
const FORCE_AFTER_MS = 2000;
const topics = new Topics('fleetlet/v1');
/** The hub needs an MQTT 5 broker: with mosquitto installed it is the sandbox's broker, else the embedded aedes. */
const MOSQUITTO = findMosquitto();

interface DeviceView {
  presence?: string;
  status?: string;
  k3s?: string;
  inventory?: string;
  lastSeen?: Date;
}
const devices = new Map<string, DeviceView>();
/** The latest broker outage the sandbox made: a sample taken within it reached the fleet through the agent's queue. */
let lastOutage: { downAt: number; backAt?: number } | undefined;
const feed: string[] = [];
let stopping = false;

async function main(): Promise<void> {
  mkdirSync(DEV_DIR, { recursive: true });
  let broker = await startBroker();
  const brokerUrl = `mqtt://127.0.0.1:${broker.port}`;
  const httpPort = await freePort();
  const operatorKey = sandboxOperatorKey(DEV_DIR);
  const configFile = writeConfig(brokerUrl, httpPort, operatorKey.trusted);
  const logFile = join(DEV_DIR, 'agent.log');
  // What `fleetlet fleet` reads from the environment, so the command to send one yourself fits a line.
  const operatorEnv = join(DEV_DIR, 'operator.env');
  writeFileSync(operatorEnv, `export FLEET_BROKER_URL=${brokerUrl} FLEET_SIGNING_KEY=${operatorKey.file}\n`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FLEETLET_')));
  const hub: SandboxHub | undefined = MOSQUITTO
    ? await startSandboxHub({ rootDir: ROOT_DIR, devDir: DEV_DIR, brokerUrl, httpPort: await freePort(), env })
    : undefined;
  const pace = sandboxPace(process.env);

  const fleet = await connectAsync(brokerUrl, { clientId: 'sandbox-fleet-view', reconnectPeriod: 1000 });
  fleet.on('message', (topic, payload) => onFleetMessage(topic, payload));
  // While the sandbox's broker is down the view reconnects every second; the outage itself is noted once.
  fleet.on('error', () => {});
  await fleet.subscribeAsync(['presence', 'inventory', 'status', 'events', 'results'].map((c) => `fleetlet/v1/devices/+/${c}`));

  const logFd = openSync(logFile, 'a');
  const agent = spawn(process.execPath, ['--import', 'tsx', join(ROOT_DIR, 'src/bin.ts'), 'agent', '--config', configFile], {
    stdio: ['ignore', logFd, logFd],
    env,
    // Its own process group: Ctrl-C in the terminal reaches only the sandbox, which then stops the agent with one
    // SIGTERM (a second signal would make the agent exit at once, without its offline presence).
    detached: true,
  });
  closeSync(logFd);
  process.on('exit', () => {
    if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGTERM');
  });
  const agentExit = new Promise<number>((done) => agent.once('exit', (code, signal) => done(code ?? (signal ? 128 : 1))));

  const shown = (path: string) => (path.startsWith(process.cwd()) ? relative(process.cwd(), path) || '.' : path);
  const header = [
    `fleetlet sandbox: broker ${brokerUrl} (${MOSQUITTO ? 'mosquitto' : 'embedded aedes'}), device ${DEVICE_ID}, agent pid ${agent.pid}`,
    `state in ${shown(DEV_DIR)}, agent log ${shown(logFile)}, :${httpPort}/metrics; Ctrl-C stops`,
    ...(hub
      ? [
          `hub ${hub.url} on SQLite: npx tsx src/bin.ts fleet devices \\`,
          `  --hub ${hub.url} --token-file ${shown(hub.tokenFile)}`,
          `dashboard ${hub.url}/ user ${hub.login.username}, password ${hub.login.password ?? `in ${shown(hub.login.passwordFile)}`}`,
        ]
      : ['hub: not run, it needs an MQTT 5 broker (apt-get install mosquitto)']),
    `send a command yourself: . ${shown(operatorEnv)}`,
    `  npx tsx src/bin.ts fleet send ping --device ${DEVICE_ID} --allow-plaintext`,
  ];
  const render = process.stdout.isTTY ? () => redraw(header, logFile) : () => {};
  if (!process.stdout.isTTY) console.log(header.join('\n'));
  const ticker = setInterval(render, 500);
  render();

  // The operator's side of the loop: a signed ping now and then, and now and then the broker goes away for a while.
  let brokerDown = false;
  const commands = setInterval(() => {
    // Only to a device that is online: a command sent before its first session exists would wait for nobody.
    const online = devices.get(DEVICE_ID)?.presence?.startsWith('online');
    if (brokerDown || stopping || !fleet.connected || !online) return;
    sendPing(fleet, topics, DEVICE_ID, operatorKey.file).then(
      (id) => note(`operator: sent a signed ping ${id} (key ${operatorKey.trusted.id})`),
      (err: unknown) => note(`operator: could not send a ping: ${err instanceof Error ? err.message : String(err)}`),
    );
  }, pace.commandEveryMs);
  let outage: NodeJS.Timeout | undefined;
  const scheduleOutage = (afterMs: number) => {
    outage = setTimeout(() => {
      if (stopping) return;
      brokerDown = true;
      lastOutage = { downAt: Date.now() };
      for (const view of devices.values()) view.presence = 'unknown (the broker is down)';
      note(`sandbox: broker down for ${pace.outageMs / 1000} s (an outage): the agent queues its reports meanwhile`);
      void broker.close().then(() => {
        outage = setTimeout(() => {
          if (stopping) return;
          void startBroker(broker.port).then((restarted) => {
            broker = restarted;
            brokerDown = false;
            if (lastOutage) lastOutage.backAt = Date.now();
            note('sandbox: broker back; the agent reconnects and drains what it queued');
            scheduleOutage(afterMs * 3);
          });
        }, pace.outageMs);
      });
    }, afterMs);
  };
  scheduleOutage(pace.outageAfterMs);

  let firstSignalAt = 0;
  const stop = async () => {
    if (stopping) {
      // npm relays the terminal's Ctrl-C to us as well: only a second press, a moment later, means "kill it now".
      if (Date.now() - firstSignalAt < FORCE_AFTER_MS) return;
      note('sandbox: second Ctrl-C; killing the agent');
      agent.kill('SIGKILL');
      return;
    }
    stopping = true;
    firstSignalAt = Date.now();
    note('sandbox: stopping the agent (SIGTERM); Ctrl-C again to kill it');
    agent.kill('SIGTERM');
    const overdue = setTimeout(() => {
      note(`sandbox: the agent did not stop within ${STOP_TIMEOUT_MS} ms; killing it`);
      agent.kill('SIGKILL');
    }, STOP_TIMEOUT_MS);
    overdue.unref();
    void agentExit.then(() => clearTimeout(overdue));
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  const code = await agentExit;
  note(`sandbox: agent exited with ${code}${stopping ? '' : ' on its own (see the agent log)'}`);
  // Give the offline presence a moment to reach the view before the broker goes.
  await new Promise((done) => setTimeout(done, 300));
  clearInterval(ticker);
  clearInterval(commands);
  clearTimeout(outage);
  render();
  await fleet.endAsync(true);
  await hub?.stop();
  if (!brokerDown) await broker.close();
  process.exitCode = stopping && code === 0 ? 0 : code;
}

function onFleetMessage(topic: string, payload: Buffer): void {
  const parsed = topics.parseDeviceTopic(topic);
  if (!parsed) return;
  const view = devices.get(parsed.deviceId) ?? {};
  devices.set(parsed.deviceId, view);
  view.lastSeen = new Date();
  let json: unknown;
  try {
    json = JSON.parse(payload.toString());
  } catch {
    note(`${parsed.deviceId} ${parsed.channel}: not JSON (${payload.length} bytes)`);
    return;
  }
  const checked = <S extends z.ZodType>(schema: S): z.infer<S> | undefined => {
    const result = schema.safeParse(json);
    if (!result.success) note(`${parsed.deviceId} ${parsed.channel}: does not match the wire contract`);
    return result.success ? result.data : undefined;
  };
  switch (parsed.channel) {
    case 'presence': {
      const p = checked(PresenceSchema);
      if (!p) return;
      view.presence = `${p.state}${p.reason ? ` (${p.reason})` : ''}, boot #${p.bootSequence}`;
      note(`${parsed.deviceId} is ${view.presence}`);
      break;
    }
    case 'status': {
      const s = checked(StatusSchema);
      if (!s) return;
      const memory = s.memory ? `, mem ${Math.round((1 - s.memory.availableBytes / s.memory.totalBytes) * 100)}%` : '';
      const cpu = s.cpu.percent !== undefined ? `cpu ${s.cpu.percent.toFixed(1)}%` : 'cpu ?';
      view.status = `#${s.seq}${s.historical ? ' (historical)' : ''} ${cpu}${memory}, outbox ${s.outbox.depth.status + s.outbox.depth.event + s.outbox.depth.result}`;
      const sampledAt = new Date(s.sampledAt).getTime();
      if (lastOutage?.backAt && sampledAt >= lastOutage.downAt && sampledAt < lastOutage.backAt) {
        const at = new Date(sampledAt).toISOString().slice(11, 19);
        note(`${parsed.deviceId} drained its queue: status #${s.seq}, sampled at ${at} while the broker was down`);
      }
      view.k3s = `${s.k3s.state}${s.k3s.healthy ? ', healthy' : ''}${s.k3s.version ? ` ${s.k3s.version}` : ''}`;
      // On a terminal the table shows it; in a log, one line per sample.
      if (!process.stdout.isTTY) note(`${parsed.deviceId} status ${view.status}; k3s ${view.k3s}`);
      break;
    }
    case 'inventory': {
      const i = checked(InventorySchema);
      if (i) {
        const k3s = i.k3sVersion ? `k3s ${i.k3sVersion}` : 'no k3s version';
        view.inventory = `${i.hardware.model} (${i.hardware.arch}, ${i.hardware.cpuCores} cores), ${i.os.distro}, kernel ${i.os.kernel}, fleetlet ${i.fleetletVersion}, ${k3s}`;
      }
      break;
    }
    case 'events': {
      const e = checked(EventSchema);
      if (e) note(`${parsed.deviceId} event ${e.kind} ${e.state} [${e.severity}]: ${e.message}`);
      break;
    }
    case 'results': {
      const r = checked(CommandResultSchema);
      if (r) note(`${parsed.deviceId} result ${r.commandId} ${r.status}${'reason' in r && r.reason ? ` (${String(r.reason)})` : ''}`);
      break;
    }
    default:
      note(`${parsed.deviceId} ${parsed.channel}: ${payload.toString().slice(0, 120)}`);
  }
}

function note(line: string): void {
  const stamped = `${new Date().toISOString().slice(11, 19)} ${line}`;
  feed.push(stamped);
  if (feed.length > 200) feed.shift();
  if (!process.stdout.isTTY) console.log(stamped);
}

function redraw(header: string[], logFile: string): void {
  const lines = screenLines({ header, devices, feed, logTail: tailLog(logFile, 5) }, process.stdout.rows || 24, process.stdout.columns || 80);
  process.stdout.write(`\x1b[H\x1b[2J${lines.join('\n')}\n`);
}

/** The last lines of the agent's JSON log, as "level message". Reads only the end of the file. */
function tailLog(file: string, count: number): string[] {
  let text: string;
  try {
    const size = statSync(file).size;
    const fd = openSync(file, 'r');
    const length = Math.min(size, 16 * 1024);
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, size - length);
    closeSync(fd);
    text = buffer.toString();
  } catch {
    return [];
  }
  return text.split('\n').filter(Boolean).slice(-count).map(compactLogLine);
}

function writeConfig(brokerUrl: string, httpPort: number, trustedKey: { id: string; publicKey: string }): string {
  const file = join(DEV_DIR, 'config.yaml');
  // Nothing can be downloaded from port 9 (discard): k3s stays honestly not installed instead of being faked.
  const nowhere = 'http://127.0.0.1:9';
  const config = {
    device: { id: DEVICE_ID, name: 'sandbox on this machine', groups: ['sandbox'], labels: { sandbox: 'true' } },
    broker: {
      url: brokerUrl,
      allowPlaintext: true,
      keepaliveSeconds: 10,
      reconnect: { baseMs: 500, capMs: 5000, stableMs: 10_000 },
    },
    k3s: {
      enabled: true,
      binaryPath: join(DEV_DIR, 'k3s/bin/k3s'),
      dataDir: join(DEV_DIR, 'k3s/data'),
      // The node password and id stay in the sandbox too: the default is the host's /etc/rancher/node.
      nodeConfigDir: join(DEV_DIR, 'k3s/node'),
      channelUrl: `${nowhere}/channels`,
      artifactUrl: `${nowhere}/releases`,
      allowInsecureMirror: true,
    },
    stateDir: join(DEV_DIR, 'state'),
    // The default (/run/fleetlet) is the host's; here status waits on disk, which only costs a write per sample.
    runtimeDir: join(DEV_DIR, 'run'),
    // The sandbox's operator key is on this disk: a signed agent.upgrade may replace only the sandbox's own copy.
    commands: { trustedKeys: [trustedKey], agentUpgrade: { binaryPath: join(DEV_DIR, 'bin/fleetlet') } },
    telemetry: { intervalSeconds: 5, http: { enabled: true, port: httpPort } },
    log: { level: 'debug' },
  };
  writeFileSync(file, `# Written by npm start on every run; edit scripts/sandbox.ts instead.\n${stringify(config)}`);
  return file;
}

/** The sandbox's broker on a free loopback port (or `port`, after an outage); close() stops it. */
async function startBroker(port = 0): Promise<{ port: number; close: () => Promise<void> }> {
  if (MOSQUITTO) return startMosquittoBroker(MOSQUITTO, DEV_DIR, port || (await freePort()));
  return startAedes(port);
}

/** aedes on a free loopback port; close() drops the clients and stops listening. */
async function startAedes(port: number): Promise<{ port: number; close: () => Promise<void> }> {
  const aedes = await Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    aedes.handle(socket);
  });
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done));
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      const closed = new Promise<void>((done) => server.close(() => done()));
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((done) => aedes.close(() => done()));
      await closed;
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.on('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => done(port));
    });
  });
}

main().catch((err: unknown) => {
  console.error(`sandbox: ${errorMessage(err)}`);
  process.exitCode = 1;
});
