import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { Lifecycle, type Part, type StopReport } from '../../src/daemon/lifecycle.js';
import { createLogger } from '../../src/lib/logger.js';

const logger = createLogger({ level: 'silent' });

function recordingPart(name: string, journal: string[], behaviour: Partial<Record<'start' | 'stop', 'fail' | 'hang'>> = {}): Part {
  const act = (what: 'start' | 'stop') => {
    journal.push(`${what} ${name}`);
    if (behaviour[what] === 'fail') throw new Error(`${name} cannot ${what}`);
    if (behaviour[what] === 'hang') return new Promise<void>(() => {});
  };
  return { name, start: () => act('start'), stop: () => act('stop') };
}

describe('Lifecycle', () => {
  it('starts parts in order and stops them in reverse', async () => {
    const journal: string[] = [];
    const lifecycle = new Lifecycle(['store', 'link', 'telemetry'].map((n) => recordingPart(n, journal)), logger, 1000);
    await lifecycle.start();
    const report = await lifecycle.stop();
    expect(journal).toEqual(['start store', 'start link', 'start telemetry', 'stop telemetry', 'stop link', 'stop store']);
    expect(report).toEqual({ stopped: ['telemetry', 'link', 'store'], failed: [], timedOut: [] });
  });

  it('stops the parts already started when one fails to start, and rethrows', async () => {
    const journal: string[] = [];
    const parts = [recordingPart('store', journal), recordingPart('link', journal, { start: 'fail' }), recordingPart('never', journal)];
    const lifecycle = new Lifecycle(parts, logger, 1000);
    await expect(lifecycle.start()).rejects.toThrow('link cannot start');
    expect(journal).toEqual(['start store', 'start link', 'stop store']);
  });

  it('bounds the stop: a hanging part is reported at the bound and the rest still stop', async () => {
    vi.useFakeTimers();
    onTestFinished(() => void vi.useRealTimers());
    const journal: string[] = [];
    const parts = [recordingPart('store', journal), recordingPart('stuck', journal, { stop: 'hang' }), recordingPart('broken', journal, { stop: 'fail' })];
    const lifecycle = new Lifecycle(parts, logger, 10_000);
    await lifecycle.start();
    let report: StopReport | undefined;
    const stopped = lifecycle.stop().then((r) => (report = r));
    await vi.advanceTimersByTimeAsync(9_999);
    expect(report).toBeUndefined();
    expect(journal.at(-1)).toBe('stop stuck');
    await vi.advanceTimersByTimeAsync(1);
    await stopped;
    expect(report!.failed).toEqual([{ name: 'broken', error: 'broken cannot stop' }]);
    expect(report!.timedOut).toEqual(['stuck']);
    expect(journal.at(-1)).toBe('stop store');
  });

  it('stops once however often stop is called', async () => {
    const journal: string[] = [];
    const lifecycle = new Lifecycle([recordingPart('store', journal)], logger, 1000);
    await lifecycle.start();
    const [a, b] = await Promise.all([lifecycle.stop(), lifecycle.stop()]);
    expect(a).toBe(b);
    expect(journal.filter((line) => line === 'stop store')).toHaveLength(1);
  });
});
