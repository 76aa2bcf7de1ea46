import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DATABASE_FILE } from '../../src/store/db.js';
import { EventLog } from '../../src/store/event-log.js';
import type { CommandHandler, CommandContext } from '../../src/commands/handler.js';
import { signCommand } from '../../src/protocol/command.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey } from '../fixtures/command-keys.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';

/** The defaults of limits.eventLog. */
const EVENT_LOG_LIMITS = { maxRows: 2000, maxBytes: 2 * 1024 * 1024 };

const operator = testKey('ops');
const stranger = testKey('stranger');

/** A real handler that counts its runs; the proof that a refused command caused no side effect. */
function countingHandler(): CommandHandler<'k3s.restart'> & { runs: CommandContext<'k3s.restart'>[] } {
  const runs: CommandContext<'k3s.restart'>[] = [];
  return {
    type: 'k3s.restart',
    onInterrupted: 'fail',
    runs,
    run: async (context) => {
      runs.push(context);
      return { status: 'succeeded', detail: 'restarted' };
    },
  };
}

/** Fills the last page of the file, past its header, with 0xff: the table written last no longer reads. */
function damageLastPage(file: string): void {
  const bytes = readFileSync(file);
  bytes.fill(0xff, bytes.length - 4096 + 8, bytes.length - 100);
  writeFileSync(file, bytes);
}

describe('command router', () => {
  let dir: { dir: string; cleanup: () => void };
  let rig: RouterRig | undefined;
  beforeEach(() => (dir = tempDir('fleetlet-router-')));
  afterEach(() => {
    rig?.close();
    rig = undefined;
    dir.cleanup();
  });

  it('runs an accepted command once and reports accepted then succeeded', async () => {
    const handler = countingHandler();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler] });
    const envelope = signedCommand(operator, { type: 'k3s.restart' });
    rig.router.receive(encode(envelope));
    await rig.router.idle();
    expect(handler.runs).toHaveLength(1);
    expect(rig.outbox.results().map((r) => r.status)).toEqual(['accepted', 'succeeded']);
    expect(rig.outbox.records.every((r) => r.topic === 'fleetlet/v1/devices/dev-1/results' && r.qos === 1)).toBe(true);
    expect(rig.journal.get(envelope.id)?.state).toBe('succeeded');
  });

  it('refuses every faulty command with its reason, runs nothing and journals nothing', async () => {
    const handler = countingHandler();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler] });
    const now = Date.now();
    const good = signedCommand(operator, { type: 'k3s.restart' });
    const cases: [string, Buffer][] = [
      ['too_large', Buffer.alloc(70 * 1024, 0x7b)],
      ['malformed', Buffer.from('\u0000\u0001garbage')],
      ['bad_args', encode(signedCommand(operator, { type: 'k3s.restart', args: { now: true } }))],
      ['unknown_key', encode(signedCommand(stranger, { type: 'k3s.restart' }))],
      ['bad_signature', encode(signCommand({ ...good, keyId: 'ops' }, stranger.privateKey))],
      ['bad_signature', encode({ ...good, expiresAt: good.expiresAt + 1000 })],
      ['wrong_target', encode(signedCommand(operator, { type: 'k3s.restart', target: { device: 'dev-2' } }))],
      ['expired', encode(signedCommand(operator, { type: 'k3s.restart', issuedAt: now - 7_200_000, expiresAt: now - 3_600_000 }))],
      ['not_yet_valid', encode(signedCommand(operator, { type: 'k3s.restart', issuedAt: now + 3_600_000 }))],
    ];
    for (const [, payload] of cases) rig.router.receive(payload);
    await rig.router.idle();
    expect(handler.runs).toHaveLength(0);
    const results = rig.outbox.results();
    expect(results.map((r) => r.status === 'rejected' && r.reason)).toEqual(cases.map(([reason]) => reason));
    expect(rig.db.prepare('SELECT COUNT(*) AS n FROM command_journal').get()).toEqual({ n: 0 });
  });

  it('refuses a replay, also after the database was closed and reopened', async () => {
    const handler = countingHandler();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler] });
    const payload = encode(signedCommand(operator, { type: 'k3s.restart' }));
    rig.router.receive(payload);
    rig.router.receive(payload);
    await rig.router.idle();
    rig.close();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler] });
    rig.router.receive(payload);
    await rig.router.idle();
    expect(handler.runs).toHaveLength(1);
    expect(rig.outbox.results()).toMatchObject([{ status: 'rejected', reason: 'replayed' }]);
  });

  it.each([
    ['a damaged page elsewhere (its journal entry is salvaged)', damageLastPage],
    ['garbage (nothing of the journal can be read)', (file: string) => writeFileSync(file, Buffer.alloc(8192, 0x5a))],
  ])('refuses a replay after the state database was recovered from %s', async (_name, damage) => {
    const handler = countingHandler();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler] });
    const hour = Date.now() + 3_600_000;
    const ran = encode(signedCommand(operator, { type: 'k3s.restart', expiresAt: hour }));
    rig.router.receive(ran);
    await rig.router.idle();
    // Issued before the recovery but never received: it may be a replay the lost journal would have caught.
    const unseen = encode(signedCommand(operator, { type: 'k3s.restart', expiresAt: hour }));
    for (let i = 0; i < 300; i++) new EventLog(rig.db, EVENT_LOG_LIMITS).record('filler', { i, text: 'x'.repeat(200) });
    rig.db.pragma('wal_checkpoint(TRUNCATE)');
    rig.close();
    damage(join(dir.dir, DATABASE_FILE));

    // Later than the recovery plus the clock-skew allowance: a fresh command from the operator.
    const later = Date.now() + 600_000;
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler], now: () => later });
    const fresh = signedCommand(operator, { type: 'k3s.restart' }, later);
    for (const payload of [ran, unseen, encode(fresh)]) rig.router.receive(payload);
    await rig.router.idle();
    expect(handler.runs).toHaveLength(2);
    expect(handler.runs[1]!.command.id).toBe(fresh.id);
    expect(rig.outbox.results().map((r) => (r.status === 'rejected' ? `rejected:${r.reason}` : r.status))).toEqual([
      'rejected:replayed',
      'rejected:replayed',
      'accepted',
      'succeeded',
    ]);
  });

  it('keeps the journal bounded: over the cap the oldest finished entries go, and a replay of one is still refused', async () => {
    const handler = countingHandler();
    let now = Date.now();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler], now: () => now, journalMaxEntries: 20, settings: { clockSkewMs: 1000 } });
    const payloads: Buffer[] = [];
    for (let i = 0; i < 25; i++) {
      now += 10_000;
      payloads.push(encode(signedCommand(operator, { type: 'k3s.restart', expiresAt: now + 3_600_000 }, now)));
      rig.router.receive(payloads.at(-1)!);
      await rig.router.idle();
    }
    expect(handler.runs).toHaveLength(25);
    const entries = rig.db.prepare('SELECT COUNT(*) FROM command_journal').pluck().get() as number;
    expect(entries).toBeLessThanOrEqual(20);
    expect(entries).toBeGreaterThanOrEqual(18);

    now += 10_000;
    const fresh = signedCommand(operator, { type: 'k3s.restart', expiresAt: now + 3_600_000 }, now);
    for (const payload of [payloads[0]!, payloads.at(-1)!, encode(fresh)]) rig.router.receive(payload);
    await rig.router.idle();
    expect(handler.runs).toHaveLength(26);
    expect(rig.outbox.results().slice(-4).map((r) => (r.status === 'rejected' ? `rejected:${r.reason}` : r.status))).toEqual([
      'rejected:replayed',
      'rejected:replayed',
      'accepted',
      'succeeded',
    ]);
  });

  it('refuses a type it has no handler for, and everything when commands are disabled', async () => {
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [] });
    const unhandled = signedCommand(operator, { type: 'k3s.restart' });
    rig.router.receive(encode(unhandled));
    await rig.router.idle();
    expect(rig.outbox.results()).toMatchObject([
      { commandId: unhandled.id, status: 'rejected', reason: 'disabled', detail: 'k3s.restart is not available on this device' },
    ]);
    expect(rig.journal.get(unhandled.id)).toBeUndefined();
    rig.close();
    const handler = countingHandler();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler], settings: { enabled: false } });
    rig.router.receive(encode(signedCommand(operator, { type: 'k3s.restart' })));
    await rig.router.idle();
    expect(handler.runs).toHaveLength(0);
    expect(rig.outbox.results()).toMatchObject([{ status: 'rejected', reason: 'disabled', detail: 'commands are disabled on this device' }]);
  });

  it('refuses commands beyond the queue bound as busy, without journaling them', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow: CommandHandler<'k3s.restart'> = {
      type: 'k3s.restart',
      onInterrupted: 'fail',
      run: async () => {
        await gate;
        return { status: 'succeeded' };
      },
    };
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [slow], settings: { maxQueued: 2 } });
    const payloads = Array.from({ length: 4 }, () => encode(signedCommand(operator, { type: 'k3s.restart' })));
    for (const payload of payloads) rig.router.receive(payload);
    release();
    await rig.router.idle();
    const statuses = rig.outbox.results().map((r) => (r.status === 'rejected' ? `rejected:${r.reason}` : r.status));
    expect(statuses.filter((s) => s === 'rejected:busy')).toHaveLength(2);
    expect(statuses.filter((s) => s === 'succeeded')).toHaveLength(2);
  });

  it('reports at most maxRejectionsPerMinute refusals, then says how many it left out', async () => {
    let now = Date.now();
    const handler = countingHandler();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler], settings: { maxRejectionsPerMinute: 60 }, now: () => now });
    for (let i = 0; i < 100; i++) rig.router.receive(Buffer.from(`garbage ${i}`));
    expect(rig.outbox.results()).toHaveLength(60);
    now += 30_000;
    rig.router.receive(Buffer.from('more garbage'));
    expect(rig.outbox.results().at(-1)).toMatchObject({ status: 'rejected', reason: 'malformed', detail: expect.stringContaining('and 40 refusal(s)') });
    // Accepted commands are not limited by it.
    const envelope = signedCommand(operator, { type: 'k3s.restart' });
    rig.router.receive(encode(envelope));
    await rig.router.idle();
    expect(rig.outbox.results().filter((r) => r.commandId === envelope.id).map((r) => r.status)).toEqual(['accepted', 'succeeded']);
  });

  it('reports a handler that throws as failed with its message', async () => {
    const broken: CommandHandler<'k3s.restart'> = {
      type: 'k3s.restart',
      onInterrupted: 'fail',
      run: async () => {
        throw new Error('supervisor is gone');
      },
    };
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [broken] });
    rig.router.receive(encode(signedCommand(operator, { type: 'k3s.restart' })));
    await rig.router.idle();
    expect(rig.outbox.results().at(-1)).toMatchObject({ status: 'failed', reason: 'error', detail: 'supervisor is gone' });
  });

  it('after a restart, resumes an interrupted resumable command from its saved step and fails the others', async () => {
    const upgradeLike: CommandHandler<'k3s.upgrade'> & { seen: unknown[] } = {
      type: 'k3s.upgrade',
      onInterrupted: 'resume',
      seen: [],
      run: async (context) => {
        upgradeLike.seen.push({ step: context.savedStep, resumed: context.resumed });
        if (!context.resumed) {
          context.saveStep({ state: 'swap' }, true);
          return new Promise(() => {}); // never returns: the "crash" below interrupts it
        }
        return { status: 'succeeded', detail: `resumed at ${(context.savedStep as { state: string }).state}` };
      },
    };
    const handler = countingHandler();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [upgradeLike, handler] });
    const upgrade = signedCommand(operator, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1' } });
    rig.router.receive(encode(upgrade));
    await new Promise((r) => setTimeout(r, 20));
    // The restart job was accepted and journaled but the agent died before it ran.
    const restart = signedCommand(operator, { type: 'k3s.restart' });
    rig.router.receive(encode(restart));
    rig.close();

    rig = routerRig({ stateDir: dir.dir, operator, handlers: [upgradeLike, handler] });
    expect(rig.router.resumeInterrupted()).toBe(2);
    await rig.router.idle();
    expect(upgradeLike.seen).toEqual([{ step: undefined, resumed: false }, { step: { state: 'swap' }, resumed: true }]);
    expect(handler.runs).toHaveLength(0);
    expect(rig.outbox.results()).toMatchObject([
      { commandId: restart.id, status: 'failed', reason: 'interrupted' },
      { commandId: upgrade.id, status: 'succeeded', detail: 'resumed at swap' },
    ]);
    expect(rig.journal.running()).toEqual([]);
    expect(rig.journal.get(upgrade.id)?.command.args).toEqual({});
  });

  it('prunes finished entries only once their commands expired', async () => {
    let now = Date.now();
    const handler = countingHandler();
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [handler], now: () => now });
    const envelope = signedCommand(operator, { type: 'k3s.restart', issuedAt: now, expiresAt: now + 60_000 });
    rig.router.receive(encode(envelope));
    await rig.router.idle();
    expect(rig.journal.prune(now + 60_000 + 300_000, 300_000)).toBe(0);
    now += 60_000 + 300_001;
    expect(rig.journal.prune(now, 300_000)).toBe(1);
    rig.router.receive(encode(envelope));
    expect(rig.outbox.results().at(-1)).toMatchObject({ status: 'rejected', reason: 'expired' });
  });

  it('command.cancel cannot cut short a handler not written to be undone, and a replayed cancel is refused', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const uncancellable: CommandHandler<'k3s.restart'> = {
      type: 'k3s.restart',
      onInterrupted: 'fail',
      run: async (context) => {
        await gate;
        return context.signal.aborted ? { status: 'failed', reason: 'aborted', detail: 'cut short' } : { status: 'succeeded', detail: 'ran to its end' };
      },
    };
    rig = routerRig({ stateDir: dir.dir, operator, handlers: [uncancellable] });
    const running = signedCommand(operator, { type: 'k3s.restart' });
    rig.router.receive(encode(running));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const cancel = signedCommand(operator, { type: 'command.cancel', args: { commandId: running.id } });
    rig.router.receive(encode(cancel));
    rig.router.receive(encode(cancel));
    expect(rig.outbox.results().filter((r) => r.commandId === cancel.id)).toMatchObject([
      { status: 'accepted', type: 'command.cancel' },
      { status: 'failed', reason: 'not_cancellable' },
      { status: 'rejected', reason: 'replayed' },
    ]);
    release();
    await rig.router.idle();
    expect(rig.outbox.results().filter((r) => r.commandId === running.id).at(-1)).toMatchObject({ status: 'succeeded', detail: 'ran to its end' });
  });
});
