import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { EventSchema, type EventInput, type EventKind } from '../../src/protocol/event.js';
import { MemoryOutbox } from '../../src/store/memory-outbox.js';
import type { OutboxLimits } from '../../src/store/outbox.js';
import { ConditionDetector } from '../../src/telemetry/condition-detector.js';
import { EventGate } from '../../src/telemetry/event-gate.js';
import { eventFromProducer } from '../../src/telemetry/producer-events.js';
import type { RawSample } from '../../src/telemetry/sampler.js';

const LIMITS: OutboxLimits = {
  budgets: {
    status: { maxRows: 1000, maxBytes: 1 << 20 },
    event: { maxRows: 1000, maxBytes: 1 << 20 },
    result: { maxRows: 1000, maxBytes: 1 << 20 },
  },
  maxTotalBytes: 4 << 20,
  maxRecordBytes: 256 * 1024,
};
const silent = pino({ level: 'silent' });

/** A gate on a hand-driven monotonic clock, and the events it put into a real (in-memory) outbox. */
function gate(options: Partial<ConstructorParameters<typeof EventGate>[0]> = {}) {
  const clock = { ms: 0 };
  const outbox = new MemoryOutbox({ limits: LIMITS });
  const events = new EventGate({
    outbox,
    topic: 'fleetlet/v1/devices/d1/events',
    logger: silent,
    monotonicMs: () => clock.ms,
    now: () => new Date(Date.UTC(2026, 2, 1) + clock.ms),
    ...options,
  });
  const queued = () => outbox.pending(0, 10_000).map((r) => EventSchema.parse(JSON.parse(r.body)));
  return { clock, events, queued };
}

const underVoltage = (state: 'raised' | 'cleared'): EventInput => ({
  kind: 'power.under-voltage',
  state,
  severity: state === 'raised' ? 'critical' : 'info',
  message: 'the supply voltage is below the safe level',
});

describe('EventGate', () => {
  it('queues a valid event with version, time and message id', () => {
    const { events, queued } = gate();
    expect(events.emit(underVoltage('raised'))).toBe('sent');
    const [event] = queued();
    expect(event).toMatchObject({ schemaVersion: 1, kind: 'power.under-voltage', state: 'raised', occurredAt: '2026-03-01T00:00:00.000Z' });
    expect(event!.messageId).toMatch(/\S/);
  });

  it('drops a raised condition that is raised again, and a one-off repeated within the window', () => {
    const { clock, events, queued } = gate();
    events.emit(underVoltage('raised'));
    expect(events.emit(underVoltage('raised'))).toBe('duplicate');
    const jump: EventInput = { kind: 'clock.jump', state: 'occurred', severity: 'info', message: 'jumped 300 s' };
    expect(events.emit(jump)).toBe('sent');
    clock.ms += 30_000;
    expect(events.emit(jump)).toBe('duplicate');
    expect(events.emit({ ...jump, message: 'jumped 900 s' })).toBe('sent');
    clock.ms += 61_000;
    expect(events.emit({ ...jump, message: 'jumped 900 s' })).toBe('sent');
    expect(queued()).toHaveLength(4);
    expect(events.stats).toMatchObject({ sent: 4, duplicates: 2 });
  });

  it('keeps different keys of one kind apart', () => {
    const { events } = gate();
    const disk = (key: string): EventInput => ({ kind: 'disk.low', key, state: 'raised', severity: 'warning', message: 'low' });
    expect(events.emit(disk('state'))).toBe('sent');
    expect(events.emit(disk('k3s'))).toBe('sent');
    expect(events.emit(disk('k3s'))).toBe('duplicate');
  });

  it('holds a flapping condition to its burst, counts what it held back, and delivers the final state', () => {
    const { clock, events, queued } = gate({ perKey: { burst: 4, refillMs: 600_000 } });
    // 501 transitions, one a second, ending raised: a loose connector.
    for (let i = 0; i <= 500; i += 1) {
      events.emit(underVoltage(i % 2 === 0 ? 'raised' : 'cleared'));
      events.flush();
      clock.ms += 1000;
    }
    expect(queued().map((e) => e.state)).toEqual(['raised', 'cleared', 'raised', 'cleared']);
    // Every later "raised" ran out of tokens; every later "cleared" repeated what the fleet already knew.
    expect(events.stats).toMatchObject({ rateLimited: 249, duplicates: 248 });
    // It stays raised. Once a token is back (10 minutes) the final state goes out, with the count held back.
    clock.ms += 600_000;
    events.flush();
    const sent = queued();
    expect(sent).toHaveLength(5);
    // It says when the condition was last raised (second 500), not when the token came back.
    expect(sent.at(-1)).toMatchObject({ state: 'raised', suppressed: 248, occurredAt: '2026-03-01T00:08:20.000Z' });
    // Nothing is pending any more.
    clock.ms += 6_000_000;
    events.flush();
    expect(queued()).toHaveLength(5);
  });

  it('bounds all events together, so many conditions flapping at once cannot flood the outbox', () => {
    const { clock, events, queued } = gate({ overall: { burst: 10, refillMs: 20_000 } });
    for (let i = 0; i < 200; i += 1) {
      events.emit({ kind: 'disk.low', key: `d${i}`, state: 'raised', severity: 'warning', message: 'low' });
    }
    expect(queued()).toHaveLength(10);
    clock.ms += 20_000 * 5;
    events.flush();
    expect(queued()).toHaveLength(15);
  });

  it('remembers a bounded number of keys, so a producer inventing keys cannot grow memory', () => {
    const { clock, events } = gate({ overall: { burst: 1000, refillMs: 1 } });
    const disk = (key: string): EventInput => ({ kind: 'disk.low', key, state: 'raised', severity: 'warning', message: 'low' });
    expect(events.emit(disk('first'))).toBe('sent');
    expect(events.emit(disk('first'))).toBe('duplicate');
    for (let i = 0; i < 300; i += 1) {
      clock.ms += 1;
      events.emit(disk(`key-${i}`));
    }
    // "first" was forgotten to make room: the same event is news again.
    expect(events.emit(disk('first'))).toBe('sent');
    expect(events.emit(disk('key-299'))).toBe('duplicate');
  });

  it('does not refill on a monotonic clock that goes backwards', () => {
    const { clock, events } = gate({ perKey: { burst: 1, refillMs: 1000 } });
    clock.ms = 10_000;
    events.emit(underVoltage('raised'));
    clock.ms = 0;
    expect(events.emit(underVoltage('cleared'))).toBe('rate-limited');
  });

  it('refuses an invalid event without throwing, and survives an outbox that throws', () => {
    const { events, queued } = gate();
    // Only a cast gets a kind outside the table past tsc; the gate still checks what it is handed.
    expect(events.emit({ kind: 'Not A Kind!' as EventKind, state: 'occurred', severity: 'info', message: 'x' })).toBe('invalid');
    expect(events.emit({ kind: 'clock.jump', state: 'occurred', severity: 'info', message: 'x'.repeat(600) })).toBe('invalid');
    expect(queued()).toHaveLength(0);
    const full = new EventGate({
      outbox: { enqueue: () => { throw new Error('SQLITE_FULL'); } },
      topic: 't',
      logger: silent,
    });
    expect(full.emit(underVoltage('raised'))).toBe('failed');
    expect(full.stats.failed).toBe(1);
  });
});

function sample(overrides: Partial<RawSample> & { atMs?: number; monoMs?: number } = {}): RawSample {
  const { atMs = 0, monoMs = 0, ...rest } = overrides;
  return { sampledAt: new Date(Date.UTC(2026, 2, 1) + atMs), monotonicMs: monoMs, disks: [], ...rest };
}

describe('ConditionDetector', () => {
  const GIB = 1024 ** 3;

  it('raises disk.low once, holds it through the hysteresis band, and clears it above the clear level', () => {
    const detector = new ConditionDetector();
    const at = (freeGib: number) => detector.evaluate(sample({ disks: [{ name: 'k3s', totalBytes: 100 * GIB, freeBytes: freeGib * GIB }] }));
    expect(at(50)).toEqual([]);
    const [raised] = at(9);
    expect(raised).toMatchObject({ kind: 'disk.low', key: 'k3s', state: 'raised', remedy: expect.stringContaining('prune') });
    expect(at(8)).toEqual([]);
    expect(at(12)).toEqual([]); // between 10 % and 15 %: still low
    expect(at(9.5)).toEqual([]);
    expect(at(16)).toMatchObject([{ state: 'cleared', severity: 'info' }]);
  });

  it('treats a small disk with little absolute space as low even above 10 %', () => {
    const detector = new ConditionDetector();
    expect(detector.evaluate(sample({ disks: [{ name: 'state', totalBytes: 1 * GIB, freeBytes: 200 * 1024 ** 2 }] }))).toMatchObject([
      { kind: 'disk.low', state: 'raised' },
    ]);
  });

  it('raises temperature.high at 80 °C and clears below 75 °C', () => {
    const detector = new ConditionDetector();
    const states = [70, 80.5, 79, 76, 74.9, 85].map((c) => detector.evaluate(sample({ temperatureC: c })).map((e) => e.state).join());
    expect(states).toEqual(['', 'raised', '', '', 'cleared', 'raised']);
  });

  it('follows the firmware flags: under-voltage and throttling as separate conditions', () => {
    const detector = new ConditionDetector();
    const at = (bits: number, now: RawSample['throttle'] extends infer T ? (T extends { now: infer N } ? N : never) : never) =>
      detector.evaluate(sample({ throttle: { bits, now, occurred: [] } })).map((e) => `${e.kind}:${e.state}`);
    expect(at(0, [])).toEqual([]);
    expect(at(0x5, ['under-voltage', 'throttled'])).toEqual(['power.under-voltage:raised', 'power.throttled:raised']);
    expect(at(0x1, ['under-voltage'])).toEqual(['power.throttled:cleared']);
    expect(at(0x0, [])).toEqual(['power.under-voltage:cleared']);
  });

  it('reports a clock jump in either direction, and not the ordinary passing of time', () => {
    const detector = new ConditionDetector();
    expect(detector.evaluate(sample({ atMs: 0, monoMs: 0 }))).toEqual([]);
    expect(detector.evaluate(sample({ atMs: 30_000, monoMs: 30_000 }))).toEqual([]);
    // NTP's first sync on a board without a real-time clock: months forward in one step.
    const [forward] = detector.evaluate(sample({ atMs: 30_000 + 86_400_000 * 90, monoMs: 60_000 }));
    expect(forward).toMatchObject({ kind: 'clock.jump', state: 'occurred', detail: { jumpSeconds: 86_400 * 90 - 30 } });
    const [back] = detector.evaluate(sample({ atMs: 86_400_000 * 90 - 600_000, monoMs: 90_000 }));
    expect(back?.message).toContain('back');
    // A device that was suspended: both clocks move on together.
    expect(detector.evaluate(sample({ atMs: 86_400_000 * 90 - 570_000, monoMs: 120_000 }))).toEqual([]);
  });
});

describe('events of other producers (the k3s supervisor)', () => {
  it('are described by the table and bounded for the wire, without anything secret', () => {
    const event = eventFromProducer({
      kind: 'k3s.password-rejected',
      at: Date.UTC(2026, 2, 1, 8),
      remedy: 'restore /etc/rancher/node/password or delete the node on the server',
      detail: {
        line: `Node password rejected ${'x'.repeat(1000)}`,
        token: 'K10abc::server:secret',
        passwordFingerprint: 'sha256:9f2c4e0d7b1a',
        actions: ['created', 'repaired'],
        exitCode: 1,
        ...Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`extra${i}`, i])),
      },
    });
    expect(event).toMatchObject({
      kind: 'k3s.password-rejected',
      state: 'occurred',
      severity: 'critical',
      message: 'the server rejected the node password',
      occurredAt: new Date(Date.UTC(2026, 2, 1, 8)),
    });
    expect(event.detail).toMatchObject({ passwordFingerprint: 'sha256:9f2c4e0d7b1a', actions: '["created","repaired"]', exitCode: 1 });
    expect(event.detail).not.toHaveProperty('token');
    expect((event.detail!.line as string).length).toBe(256);
    expect(Object.keys(event.detail!)).toHaveLength(16);
    expect(eventFromProducer({ kind: 'k3s.up', at: NaN }).occurredAt).toBeUndefined();
  });

  it('pass the gate: a crash loop reported over and over becomes one event, then what the rate allows', () => {
    const { clock, events, queued } = gate();
    for (let i = 0; i < 100; i += 1) {
      events.emit(eventFromProducer({ kind: 'k3s.crash-loop', at: Date.UTC(2026, 2, 1) + clock.ms, detail: { restarts: 5 } }));
      clock.ms += 1000;
    }
    // One per minute passes the duplicate check; the bucket allows four, then one per ten minutes.
    expect(queued().map((e) => e.kind)).toEqual(['k3s.crash-loop', 'k3s.crash-loop']);
    expect(events.stats.duplicates).toBe(98);
    for (const e of queued()) expect(EventSchema.parse(e).severity).toBe('critical');
  });
});
