import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CommandHandler } from '../../src/commands/handler.js';
import { TRUST_FILE, TrustState } from '../../src/commands/trust-state.js';
import { trustUpdateHandler } from '../../src/commands/trust-update.js';
import { createLogger } from '../../src/lib/logger.js';
import { signTrustDocument, type SignedTrustDocument } from '../../src/protocol/trust-document.js';
import type { CommandResult } from '../../src/protocol/result.js';
import { tempDir } from '../helpers/paths.js';
import { encode, signedCommand, testKey, trustOf, type CommandSpec, type TestKey } from '../fixtures/command-keys.js';
import { routerRig, type RouterRig } from '../fixtures/command-router-setup.js';
import { operatorEntry, trustDocument } from '../fixtures/trust-documents.js';

/**
 * The layered trust on the device, through the real router, journal (a real SQLite file) and trust file: a root key
 * signs versioned trust documents; trust.update delivers them; operator keys are scoped, expire and are revoked.
 */
const root = testKey('root');
const newRoot = testKey('root');
const legacy = testKey('legacy-ops');
const ops = testKey('ops-2026');
const oncall = testKey('oncall');
const retired = testKey('ops-2025');

/** A real handler that counts its runs; a refused command never reaches it. */
function counting<T extends 'ping' | 'k3s.restart'>(type: T): CommandHandler<T> & { runs: number } {
  const handler = {
    type,
    onInterrupted: 'fail' as const,
    runs: 0,
    run: async () => {
      handler.runs += 1;
      return { status: 'succeeded' as const, detail: 'ran' };
    },
  };
  return handler;
}

describe('layered trust: root, trust documents, scoped and revocable operator keys', () => {
  let dir: { dir: string; cleanup: () => void };
  let rig: RouterRig | undefined;
  let trust: TrustState;
  const ping = counting('ping');
  const restart = counting('k3s.restart');

  /** The device as the commands part builds it: a bootstrap root, a configured (legacy) key, the trust file. */
  function device(extraHandlers: CommandHandler<'k3s.upgrade'>[] = []): RouterRig {
    trust = new TrustState({ stateDir: dir.dir, bootstrapRoot: root.publicBase64, fallbackKeys: trustOf({ key: legacy }), logger: createLogger({ level: 'silent' }) });
    rig = routerRig({ stateDir: dir.dir, operator: legacy, handlers: [ping, restart, trustUpdateHandler(trust), ...extraHandlers], trust });
    return rig;
  }

  async function send(key: TestKey, spec: CommandSpec = {}): Promise<CommandResult> {
    const command = signedCommand(key, spec);
    rig!.router.receive(encode(command));
    await rig!.router.idle();
    const mine = rig!.outbox.results().filter((r) => r.commandId === command.id);
    return mine.at(-1)!;
  }

  const deliver = (signed: SignedTrustDocument, by: TestKey = root) => send(by, { type: 'trust.update', args: { document: signed } });

  beforeEach(() => {
    dir = tempDir('fleetlet-trust-');
    ping.runs = 0;
    restart.runs = 0;
  });
  afterEach(() => {
    rig?.close();
    rig = undefined;
    dir.cleanup();
  });

  it('accepts a root-signed document of a higher version, persists it, and from then on only its keys count, also after a restart', async () => {
    device();
    expect(await send(legacy)).toMatchObject({ status: 'succeeded' });
    expect(await send(ops)).toMatchObject({ status: 'rejected', reason: 'unknown_key' });

    const v1 = trustDocument(root, 1, { operatorKeys: [operatorEntry(ops)] });
    expect(await deliver(v1)).toMatchObject({ status: 'succeeded', detail: expect.stringContaining('version 1 in force') });
    const file = join(dir.dir, TRUST_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(v1);

    expect(await send(ops)).toMatchObject({ status: 'succeeded' });
    expect(await send(legacy)).toMatchObject({ status: 'rejected', reason: 'unknown_key' });

    rig!.close();
    device();
    expect(trust.document()?.document.version).toBe(1);
    expect(await send(ops)).toMatchObject({ status: 'succeeded' });
    expect(await send(legacy)).toMatchObject({ status: 'rejected', reason: 'unknown_key' });
    expect(ping.runs).toBe(3);
  });

  it('refuses an older or equal version, a document the root did not sign, and a new root signed only by itself or only by the old root, by name', async () => {
    device();
    expect(await deliver(trustDocument(root, 2, { operatorKeys: [operatorEntry(ops)] }))).toMatchObject({ status: 'succeeded' });
    const held = readFileSync(join(dir.dir, TRUST_FILE), 'utf8');

    const cases: [string, SignedTrustDocument][] = [
      ['trust_rollback', trustDocument(root, 1, { operatorKeys: [operatorEntry(ops), operatorEntry(oncall)] })],
      ['trust_rollback', trustDocument(root, 2, { operatorKeys: [operatorEntry(ops), operatorEntry(oncall)] })],
      ['trust_bad_signature', trustDocument(root, 3, { operatorKeys: [operatorEntry(oncall)] }, [ops])],
      ['trust_bad_signature', trustDocument(newRoot, 3, { operatorKeys: [operatorEntry(oncall)] }, [newRoot])],
      ['trust_root_not_cosigned', trustDocument(newRoot, 3, { operatorKeys: [operatorEntry(oncall)] }, [root])],
    ];
    for (const [reason, signed] of cases) {
      expect(await deliver(signed)).toMatchObject({ status: 'failed', reason });
    }
    // An operator key may deliver a document too, when its scopes allow trust.update; the root check is the same.
    expect(await deliver(trustDocument(root, 3, {}, [ops]), ops)).toMatchObject({ status: 'failed', reason: 'trust_bad_signature' });
    expect(readFileSync(join(dir.dir, TRUST_FILE), 'utf8')).toBe(held);
    expect(await send(oncall)).toMatchObject({ status: 'rejected', reason: 'unknown_key' });

    // A rotation signed by both roots goes through; the old root signs nothing from then on.
    const rotated = trustDocument(newRoot, 3, { operatorKeys: [operatorEntry(oncall)] }, [root, newRoot]);
    expect(await deliver(rotated)).toMatchObject({ status: 'succeeded', detail: expect.stringContaining('root key was rotated') });
    expect(await send(oncall)).toMatchObject({ status: 'succeeded' });
    expect(await deliver(trustDocument(newRoot, 4, {}, [root]), root)).toMatchObject({ status: 'rejected', reason: 'bad_signature' });
    expect(await deliver(trustDocument(newRoot, 4, {}, [root]), newRoot)).toMatchObject({ status: 'failed', reason: 'trust_bad_signature' });
    expect(await deliver(trustDocument(newRoot, 4, {}, [newRoot]), newRoot)).toMatchObject({ status: 'succeeded' });
  });

  it('refuses the commands of a revoked, an expired or an out-of-scope key by name, and runs nothing', async () => {
    device();
    const now = Date.now();
    const document = trustDocument(root, 1, {
      operatorKeys: [
        operatorEntry(ops, { scopes: { types: ['ping'], targets: ['device:dev-1'] } }),
        operatorEntry(oncall, { expiresAt: now - 3_600_000 }),
      ],
      revoked: [retired.id],
    });
    expect(await deliver(document)).toMatchObject({ status: 'succeeded' });

    expect(await send(ops, { type: 'k3s.restart' })).toMatchObject({ status: 'rejected', reason: 'out_of_scope', detail: expect.stringContaining('may not sign k3s.restart') });
    expect(await send(ops, { target: { group: 'canary' } })).toMatchObject({ status: 'rejected', reason: 'out_of_scope', detail: expect.stringContaining('may not address group:canary') });
    expect(await send(oncall)).toMatchObject({ status: 'rejected', reason: 'key_expired' });
    expect(await send(retired)).toMatchObject({ status: 'rejected', reason: 'revoked_key' });
    // The root signs trust documents and their delivery, nothing else.
    expect(await send(root)).toMatchObject({ status: 'rejected', reason: 'out_of_scope' });
    expect(ping.runs + restart.runs).toBe(0);
    expect(await send(ops)).toMatchObject({ status: 'succeeded' });
    expect(ping.runs).toBe(1);
  });

  it('does not resume a command whose key was revoked while the agent was down: it fails naming the revocation', async () => {
    const resumable: CommandHandler<'k3s.upgrade'> & { runs: { id: string; resumed: boolean }[] } = {
      type: 'k3s.upgrade',
      onInterrupted: 'resume',
      runs: [],
      run: async (context) => {
        resumable.runs.push({ id: context.command.id, resumed: context.resumed });
        if (!context.resumed) return new Promise(() => {}); // the "crash" below interrupts it
        return { status: 'succeeded', detail: 'resumed' };
      },
    };
    device([resumable]);
    expect(await deliver(trustDocument(root, 1, { operatorKeys: [operatorEntry(ops), operatorEntry(oncall)] }))).toMatchObject({ status: 'succeeded' });
    const byOps = signedCommand(ops, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1' } });
    const byOncall = signedCommand(oncall, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1' } });
    rig!.router.receive(encode(byOps));
    rig!.router.receive(encode(byOncall));
    await new Promise((resolve) => setTimeout(resolve, 20));
    rig!.close();

    // While the device was down, the fleet revoked ops-2026 (the next start finds the newer document in force).
    const revoking = trustDocument(root, 2, { operatorKeys: [operatorEntry(oncall)], revoked: [ops.id] });
    writeFileSync(join(dir.dir, TRUST_FILE), JSON.stringify(revoking));

    device([resumable]);
    expect(rig!.router.resumeInterrupted()).toBe(2);
    await rig!.router.idle();
    expect(resumable.runs).toEqual([
      { id: byOps.id, resumed: false },
      { id: byOncall.id, resumed: true },
    ]);
    expect(rig!.outbox.results()).toMatchObject([
      { commandId: byOps.id, status: 'failed', reason: 'revoked_key', detail: expect.stringContaining('was not resumed') },
      { commandId: byOncall.id, status: 'succeeded' },
    ]);
    expect(rig!.journal.running()).toEqual([]);
  });

  it('with a trust file that does not hold, trusts neither the document nor the configured keys, only a root-signed update', async () => {
    device();
    expect(await deliver(trustDocument(root, 3, { operatorKeys: [operatorEntry(ops)], revoked: [legacy.id] }))).toMatchObject({ status: 'succeeded' });
    rig!.close();
    // Edited on the card: the revocation removed. The root's signature no longer holds over it.
    const file = join(dir.dir, TRUST_FILE);
    writeFileSync(file, readFileSync(file, 'utf8').replace(`"${legacy.id}"`, '"someone-else"'));

    device();
    expect(trust.document()).toBeUndefined();
    expect(await send(legacy)).toMatchObject({ status: 'rejected', reason: 'unknown_key' });
    expect(await send(ops)).toMatchObject({ status: 'rejected', reason: 'unknown_key' });
    expect(await deliver(trustDocument(root, 4, { operatorKeys: [operatorEntry(ops)], revoked: [legacy.id] }))).toMatchObject({ status: 'succeeded' });
    expect(await send(ops)).toMatchObject({ status: 'succeeded' });
  });

  it('past the document expiry every operator key counts as expired, the root can still send a newer one, and an expired document is refused', async () => {
    let now = Date.now();
    trust = new TrustState({ stateDir: dir.dir, bootstrapRoot: root.publicBase64, fallbackKeys: trustOf({ key: legacy }), logger: createLogger({ level: 'silent' }), now: () => now });
    rig = routerRig({ stateDir: dir.dir, operator: legacy, handlers: [ping, trustUpdateHandler(trust)], trust, now: () => now });
    const stale = signTrustDocument({ ...trustDocument(root, 1).document, expiresAt: now - 1 }, [root.privateKey]);
    expect(await send(root, { type: 'trust.update', args: { document: stale }, issuedAt: now })).toMatchObject({ status: 'failed', reason: 'trust_expired' });

    const week = 7 * 86_400_000;
    const v1 = signTrustDocument({ ...trustDocument(root, 1, { operatorKeys: [operatorEntry(ops)] }).document, expiresAt: now + week }, [root.privateKey]);
    expect(await send(root, { type: 'trust.update', args: { document: v1 }, issuedAt: now })).toMatchObject({ status: 'succeeded' });
    expect(await send(ops, { issuedAt: now })).toMatchObject({ status: 'succeeded' });
    now += week + 600_000; // past the expiry and the clock-skew allowance
    expect(await send(ops, { issuedAt: now })).toMatchObject({ status: 'rejected', reason: 'key_expired' });
    const v2 = signTrustDocument({ ...trustDocument(root, 2, { operatorKeys: [operatorEntry(ops)] }).document, expiresAt: now + week }, [root.privateKey]);
    expect(await send(root, { type: 'trust.update', args: { document: v2 }, issuedAt: now })).toMatchObject({ status: 'succeeded' });
    expect(await send(ops, { issuedAt: now })).toMatchObject({ status: 'succeeded' });
  });

  it('lets a resumed command past its point of no return finish after its key was revoked, with one final result', async () => {
    const swapping: CommandHandler<'k3s.upgrade'> & { runs: boolean[] } = {
      type: 'k3s.upgrade',
      onInterrupted: 'resume',
      // As agent.upgrade: only the download can be stopped; after the swap, the trial or the rollback decides.
      cancellable: (step) => step === undefined,
      runs: [],
      run: async (context) => {
        swapping.runs.push(context.resumed);
        if (context.resumed) return { status: 'failed', reason: 'rolled_back', detail: 'the previous version was put back' };
        context.saveStep({ state: 'swapped' }, true);
        return new Promise(() => {});
      },
    };
    device([swapping]);
    expect(await deliver(trustDocument(root, 1, { operatorKeys: [operatorEntry(ops)] }))).toMatchObject({ status: 'succeeded' });
    const upgrade = signedCommand(ops, { type: 'k3s.upgrade', args: { version: 'v1.36.3+k3s1' } });
    rig!.router.receive(encode(upgrade));
    await new Promise((resolve) => setTimeout(resolve, 20));
    rig!.close();
    writeFileSync(join(dir.dir, TRUST_FILE), JSON.stringify(trustDocument(root, 2, { revoked: [ops.id] })));

    device([swapping]);
    rig!.router.resumeInterrupted();
    await rig!.router.idle();
    expect(swapping.runs).toEqual([false, true]);
    expect(rig!.outbox.results()).toMatchObject([{ commandId: upgrade.id, status: 'failed', reason: 'rolled_back' }]);
  });

  it('stops a queued command whose key a trust.update ahead of it revoked', async () => {
    let release: () => void = () => {};
    const slow: CommandHandler<'k3s.restart'> = {
      type: 'k3s.restart',
      onInterrupted: 'fail',
      run: () => new Promise((resolve) => (release = () => resolve({ status: 'succeeded', detail: 'ran' }))),
    };
    trust = new TrustState({ stateDir: dir.dir, bootstrapRoot: root.publicBase64, fallbackKeys: trustOf({ key: legacy }), logger: createLogger({ level: 'silent' }) });
    rig = routerRig({ stateDir: dir.dir, operator: legacy, handlers: [ping, slow, trustUpdateHandler(trust)], trust });
    rig.router.receive(encode(signedCommand(legacy, { type: 'k3s.restart' })));
    const update = signedCommand(root, { type: 'trust.update', args: { document: trustDocument(root, 1, { operatorKeys: [operatorEntry(ops)] }) } });
    rig.router.receive(encode(update));
    const queued = signedCommand(legacy);
    rig.router.receive(encode(queued));
    await new Promise((resolve) => setTimeout(resolve, 20));
    release();
    await rig.router.idle();
    expect(rig.outbox.results().filter((r) => r.commandId === queued.id)).toMatchObject([
      { status: 'accepted' },
      { status: 'failed', reason: 'unknown_key', detail: expect.stringContaining('nothing ran') },
    ]);
    expect(ping.runs).toBe(0);
  });
});
