// `npx tsx scripts/profile-drain.ts [bare|drain] [out.cpuprofile]`: a V8 CPU profile of the drain of a filled outbox
// (the real SqliteOutbox and Drainer, a real mosquitto) or of the bare MQTT.js publisher of the same bodies, covering
// only the publishing. Then `npx tsx scripts/profile-drain.ts summary out.cpuprofile` prints self time per function.
// `npx tsx scripts/profile-drain.ts allocated|promoted`: V8's sampling heap profiler over the drain instead, bytes per
// record by allocating call site: everything allocated, or only what survived the young generation (what fills the
// old space; docs/benchmarks.md, "Memory while draining"). MQTT.js logs through the bundle's stand-in for `debug`
// (scripts/quiet-debug.ts), as in the agent; PROFILE_DEBUG=package keeps the package.
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import Module, { createRequire } from 'node:module';
import { Drainer, publisherOf } from '../src/link/drain.js';
import { STATUS_EXAMPLE } from '../src/protocol/status.js';
import { openDatabase } from '../src/store/db.js';
import { SqliteOutbox } from '../src/store/sqlite-outbox.js';
import type { OutboxLimits } from '../src/store/outbox.js';
import { tempDir } from '../test/helpers/paths.js';

const RECORDS = Number(process.env.PROFILE_RECORDS ?? 200_000);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 500);
const TOPIC = 'bench/devices/d1/status';
const roomy = { maxRows: 10_000_000, maxBytes: 1 << 30 };
const LIMITS: OutboxLimits = { budgets: { status: roomy, event: roomy, result: roomy }, maxTotalBytes: 2 ** 31, maxRecordBytes: 256 * 1024 };

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

function summary(file: string): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const parts = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const key = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
    const part = partOf(functionName, url);
    parts.set(part, (parts.get(part) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  console.log(`total ${(total / 1000).toFixed(0)} ms, ${(total / RECORDS).toFixed(2)} us per record of ${RECORDS}`);
  for (const [part, us] of [...parts].sort((a, b) => b[1] - a[1])) console.log(`${(us / RECORDS).toFixed(2).padStart(7)} us/rec  ${part}`);
  for (const [key, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 120)) {
    console.log(`${(us / RECORDS).toFixed(3).padStart(7)} us/rec ${((100 * us) / total).toFixed(1).padStart(5)}%  ${key}`);
  }
}

/** better-sqlite3's statement methods are native functions without a script. */
const SQLITE_NATIVE = new Set(['all', 'run', 'get', 'iterate', 'exec', 'pragma', 'transaction', 'prepare']);

function partOf(functionName: string, url: string): string {
  if (functionName === '(garbage collector)' || functionName === '(idle)' || functionName === '(program)') return functionName;
  if (url === '' && SQLITE_NATIVE.has(functionName)) return 'SQLite (better-sqlite3 statements)';
  if (url.includes('/src/') && !url.includes('node_modules')) return 'fleetlet code (drain, outbox)';
  return 'MQTT.js, streams, sockets, timers, promises (the publishing itself)';
}

interface AllocationNode {
  callFrame: ProfileNode['callFrame'];
  selfSize: number;
  children: AllocationNode[];
}

/** Bytes per record by call site (the allocating function and its two callers). */
function allocationSummary(head: AllocationNode): void {
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (node: AllocationNode, stack: string[]) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const path = [...stack, `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`];
    if (node.selfSize > 0) {
      const site = path.slice(-3).join(' < ');
      bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
      total += node.selfSize;
    }
    for (const child of node.children) walk(child, path);
  };
  walk(head, []);
  console.log(`${(total / RECORDS).toFixed(0)} B per record of ${RECORDS} (sampled)`);
  for (const [site, bytes] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    console.log(`${(bytes / RECORDS).toFixed(0).padStart(6)} B/rec  ${site}`);
  }
}

/** Resolves `debug` to the bundle's stand-in for the modules loaded after this, as the bundle does. */
function useQuietDebug(): void {
  const loader = Module as unknown as { _resolveFilename(request: string, ...rest: unknown[]): string };
  const resolve = loader._resolveFilename.bind(loader);
  const shim = createRequire(import.meta.url).resolve('./quiet-debug-shim.cjs');
  loader._resolveFilename = (request, ...rest) => (request === 'debug' ? shim : resolve(request, ...rest));
}

async function profile(mode: string, out: string): Promise<void> {
  if (process.env.PROFILE_DEBUG !== 'package') useQuietDebug();
  // Loaded only now, after the hook: the test broker's module loads MQTT.js's packet parser too.
  const { default: mqtt } = await import('mqtt');
  const { startMosquitto } = await import('../test/helpers/mosquitto.js');
  const broker = await startMosquitto({ globalLines: ['max_queued_messages 0'] });
  const dir = tempDir('fleetlet-profile-drain-');
  const { db } = openDatabase({ stateDir: dir.dir, fleetletVersion: 'profile' });
  const outbox = new SqliteOutbox(db, { limits: LIMITS });
  for (let i = 0; i < RECORDS; i += 1000) {
    outbox.enqueueMany(Array.from({ length: Math.min(1000, RECORDS - i) }, (_, k) => ({ class: 'status' as const, topic: TOPIC, payload: { ...STATUS_EXAMPLE, seq: i + k + 1 } })));
  }
  const client = await mqtt.connectAsync(broker.url, { clientId: 'profile-drain' });
  const bodies = mode === 'bare' ? outbox.pending(0, RECORDS).map((r) => r.body) : [];
  const session = new Session();
  session.connect();
  const heap = mode === 'allocated' || mode === 'promoted';
  if (heap) {
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 512,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: mode === 'allocated',
    } as never);
  } else {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    await session.post('Profiler.start');
  }
  const started = performance.now();
  const cpu = process.cpuUsage();
  if (mode === 'bare') {
    let next = 0;
    const worker = async () => {
      while (next < bodies.length) await client.publishAsync(TOPIC, bodies[next++]!, { qos: 1 });
    };
    await Promise.all(Array.from({ length: WINDOW }, worker));
  } else {
    const drainer = new Drainer(outbox, { window: WINDOW });
    drainer.onConnect(publisherOf(client));
    while (outbox.stats().rows.status > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    drainer.stop();
  }
  const used = process.cpuUsage(cpu);
  const ms = performance.now() - started;
  if (heap) {
    const { profile: result } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: AllocationNode } };
    allocationSummary(result.head);
  } else {
    const { profile: result } = await session.post('Profiler.stop');
    writeFileSync(out, JSON.stringify(result));
  }
  console.log(`${mode}: ${Math.round((RECORDS / ms) * 1000)} msg/s, ${(((used.user + used.system) / RECORDS)).toFixed(1)} us CPU/msg (profiler on)`);
  await client.endAsync();
  db.close();
  dir.cleanup();
  await broker.close();
}

const [mode = 'drain', file = `${mode}.cpuprofile`] = process.argv.slice(2);
if (mode === 'summary') summary(file);
else await profile(mode, file);
