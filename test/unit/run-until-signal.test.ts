import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Lifecycle, type Part } from '../../src/daemon/lifecycle.js';
import { runUntilSignal } from '../../src/daemon/run-until-signal.js';
import { createLogger } from '../../src/lib/logger.js';

const logger = createLogger({ level: 'silent' });

/** A signal source the test fires by hand: process.on/off without touching the test runner's own process. */
class Signals extends EventEmitter {
  fire(signal: NodeJS.Signals): void {
    this.emit(signal);
  }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('runUntilSignal', () => {
  it('stops on the first signal and resolves 0 after a clean stop', async () => {
    const signals = new Signals();
    const stopped: string[] = [];
    const part: Part = { name: 'store', start: () => {}, stop: () => void stopped.push('store') };
    const forced: number[] = [];
    const running = runUntilSignal(new Lifecycle([part], logger, 1000), logger, signals, (code) => forced.push(code));
    await settle();
    signals.fire('SIGTERM');
    expect(await running).toBe(0);
    expect(stopped).toEqual(['store']);
    expect(forced).toEqual([]);
    expect(signals.listenerCount('SIGTERM') + signals.listenerCount('SIGINT')).toBe(0);
  });

  it('exits 1 at once on a second signal while a part is still stopping', async () => {
    const signals = new Signals();
    let finishStop: () => void = () => {};
    const slow: Part = { name: 'slow', start: () => {}, stop: () => new Promise<void>((resolve) => (finishStop = resolve)) };
    const forced: number[] = [];
    const running = runUntilSignal(new Lifecycle([slow], logger, 10_000), logger, signals, (code) => forced.push(code));
    await settle();
    signals.fire('SIGINT');
    await settle();
    expect(forced).toEqual([]);
    signals.fire('SIGINT');
    expect(forced).toEqual([1]);
    finishStop();
    await running;
  });

  it('resolves 1 when a part does not stop within the bound', async () => {
    const signals = new Signals();
    const stuck: Part = { name: 'stuck', start: () => {}, stop: () => new Promise<void>(() => {}) };
    const running = runUntilSignal(new Lifecycle([stuck], logger, 100), logger, signals, () => {});
    await settle();
    signals.fire('SIGTERM');
    expect(await running).toBe(1);
  });
});
