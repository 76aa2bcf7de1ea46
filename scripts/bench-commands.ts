// `npm run bench:commands`: what taking a signed command costs on the device, each figure beside a baseline
// measured in the same run.
//   verify    verifyCommand (size, schema, key, Ed25519, target, window)  vs  JSON.parse + envelope schema alone
//   accept    router.receive of a ping through verify, journal (real SQLite file) and results  vs  verify alone
//   sign      operator side: buildSignedCommand per command  vs  JSON.stringify of the same envelope
//   memory    RSS growth while 20,000 commands go through the router  vs  the RSS before
import { generateKeyPairSync } from 'node:crypto';
import { CommandJournal } from '../src/commands/journal.js';
import { pingHandler } from '../src/commands/ping.js';
import { CommandRouter } from '../src/commands/router.js';
import { verifyCommand, type VerifyContext } from '../src/commands/verify.js';
import { buildSignedCommand } from '../src/fleet/signer.js';
import { createLogger } from '../src/lib/logger.js';
import { CommandEnvelopeSchema, type CommandEnvelope } from '../src/protocol/command.js';
import { Topics } from '../src/protocol/topics.js';
import { openDatabase } from '../src/store/db.js';
import type { NewOutboxRecord, Outbox, OutboxRecord } from '../src/store/outbox.js';
import { tempDir } from '../test/helpers/paths.js';

const COUNT = Number(process.env.BENCH_COMMANDS ?? 20_000);
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const signer = { keyId: 'ops', key: privateKey };
const trustedKeys = new Map([['ops', { key: publicKey, revoked: false }]]);

function commands(n: number): Buffer[] {
  return Array.from({ length: n }, () =>
    Buffer.from(JSON.stringify(buildSignedCommand({ type: 'ping', target: { device: 'bench-1' }, args: {}, ttlSeconds: 3600 }, signer))),
  );
}

function rate(label: string, n: number, work: () => void): number {
  const start = process.hrtime.bigint();
  work();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const perSecond = n / seconds;
  console.log(`  ${label.padEnd(46)} ${Math.round(perSecond).toLocaleString('en').padStart(10)}/s  ${((seconds / n) * 1e6).toFixed(1).padStart(7)} us each`);
  return perSecond;
}

const context = (): VerifyContext => ({
  trustedKeys,
  deviceId: 'bench-1',
  groups: [],
  nowMs: Date.now(),
  clockSkewMs: 300_000,
  maxLifetimeMs: 86_400_000,
  maxBytes: 64 * 1024,
  seenBefore: () => false,
});

console.log(`bench:commands, ${COUNT.toLocaleString('en')} commands per figure (node ${process.version})`);
const payloads = commands(COUNT);

console.log('verify');
const base = rate('baseline: JSON.parse + envelope schema', COUNT, () => {
  for (const p of payloads) CommandEnvelopeSchema.safeParse(JSON.parse(p.toString('utf8')));
});
const full = rate('verifyCommand (all checks, Ed25519)', COUNT, () => {
  const ctx = context();
  for (const p of payloads) if (!verifyCommand(p, ctx).ok) throw new Error('bench command refused');
});
console.log(`  -> verification costs ${(base / full).toFixed(1)}x the bare parse`);

console.log('accept (ping, through journal and results)');
const dir = tempDir('fleetlet-bench-commands-');
const { db } = openDatabase({ stateDir: dir.dir, fleetletVersion: 'bench' });
let enqueued = 0;
const outbox: Outbox = {
  enqueue: (record: NewOutboxRecord): OutboxRecord => {
    enqueued += 1;
    return { ...record, seq: enqueued, messageId: String(enqueued), qos: 1, retain: false, createdAt: 0 };
  },
};
const router = new CommandRouter({
  settings: { enabled: true, deviceId: 'bench-1', groups: [], trustedKeys, clockSkewMs: 300_000, maxLifetimeMs: 86_400_000, maxBytes: 65_536, maxQueued: COUNT + 1 },
  journal: new CommandJournal(db),
  outbox,
  topics: new Topics('fleetlet/v1'),
  handlers: [pingHandler('bench')],
  logger: createLogger({ level: 'silent' }),
});
const fresh = commands(COUNT);
const rssBefore = process.memoryUsage().rss;
const startAccept = process.hrtime.bigint();
for (const p of fresh) router.receive(p);
await router.idle();
const acceptSeconds = Number(process.hrtime.bigint() - startAccept) / 1e9;
const rssAfter = process.memoryUsage().rss;
console.log(`  ${'router.receive -> succeeded, SQLite journal'.padEnd(46)} ${Math.round(COUNT / acceptSeconds).toLocaleString('en').padStart(10)}/s  ${((acceptSeconds / COUNT) * 1e6).toFixed(1).padStart(7)} us each`);
console.log(`  -> ${(full / (COUNT / acceptSeconds)).toFixed(1)}x the cost of verify alone; ${enqueued.toLocaleString('en')} results queued`);
const journalRows = (db.prepare('SELECT COUNT(*) AS n FROM command_journal').get() as { n: number }).n;

console.log('sign (operator side)');
const sample: CommandEnvelope = JSON.parse(payloads[0]!.toString('utf8')) as CommandEnvelope;
const stringify = rate('baseline: JSON.stringify of an envelope', COUNT, () => {
  for (let i = 0; i < COUNT; i++) JSON.stringify(sample);
});
const sign = rate('buildSignedCommand (args schema, Ed25519)', COUNT, () => {
  for (let i = 0; i < COUNT; i++) buildSignedCommand({ type: 'ping', target: { device: 'bench-1' }, args: {}, ttlSeconds: 3600 }, signer);
});
console.log(`  -> ${(stringify / sign).toFixed(1)}x the bare stringify`);

console.log('memory');
console.log(`  RSS before the router run ${(rssBefore / 2 ** 20).toFixed(1)} MiB, after ${(rssAfter / 2 ** 20).toFixed(1)} MiB (+${((rssAfter - rssBefore) / 2 ** 20).toFixed(1)} MiB for ${COUNT.toLocaleString('en')} commands; ${journalRows.toLocaleString('en')} journal rows on disk)`);
db.close();
dir.cleanup();
