import { describe, expect, it } from 'vitest';
import { STATE_EVENT_KINDS } from '../../src/daemon/agent-state.js';
import { IDENTITY_EVENT_KINDS } from '../../src/identity/reidentify.js';
import { ENROLMENT_EVENT_KINDS } from '../../src/identity/enrolment-part.js';
import { K3S_EVENT_KINDS } from '../../src/k3s/events.js';
import { classifyLine } from '../../src/k3s/log-patterns.js';
import { EVENT_KINDS, EventSchema, eventKindSpec, isEventKind, type EventKind } from '../../src/protocol/event.js';
import { SCHEMA_VERSION } from '../../src/protocol/topics.js';
import { CONDITION_EVENT_KINDS } from '../../src/telemetry/condition-detector.js';
import { eventFromProducer } from '../../src/telemetry/producer-events.js';

/**
 * protocol/event.ts is the one table of event kinds. Each producer declares the kinds it emits (its emit takes only
 * those, so tsc holds it to the list); this walks every list against the table, and the table against the lists.
 */
const PRODUCERS: Record<string, readonly string[]> = {
  'the k3s part': K3S_EVENT_KINDS,
  'the telemetry condition detector': CONDITION_EVENT_KINDS,
  'the state database': STATE_EVENT_KINDS,
  'the device identity': IDENTITY_EVENT_KINDS,
  enrolment: ENROLMENT_EVENT_KINDS,
};

const produced = (): { producer: string; kind: string }[] =>
  Object.entries(PRODUCERS).flatMap(([producer, kinds]) => kinds.map((kind) => ({ producer, kind })));

describe('one vocabulary of event kinds', () => {
  it('has every kind a producer emits in the table, with a wire-shaped name, a sentence and, unless good news, a remedy', () => {
    const problems: string[] = [];
    for (const { producer, kind } of produced()) {
      if (!isEventKind(kind)) {
        problems.push(`${producer} emits ${kind}, which the table lacks`);
        continue;
      }
      const { severity, sentence, remedy } = eventKindSpec(kind);
      const wire = EventSchema.safeParse({ schemaVersion: SCHEMA_VERSION, kind, state: 'occurred', severity, message: sentence, occurredAt: new Date(0).toISOString() });
      if (!wire.success) problems.push(`${kind} is not a valid event on the wire`);
      if (sentence.trim() === '') problems.push(`${kind} has no sentence`);
      if (severity !== 'info' && !remedy?.trim()) problems.push(`${kind} is ${severity} but says nothing a person can do`);
    }
    expect(problems).toEqual([]);
  });

  it('has no kind in the table that no producer emits (a drifted or dead spelling)', () => {
    const emitted = new Set(produced().map(({ kind }) => kind));
    expect(Object.keys(EVENT_KINDS).filter((kind) => !emitted.has(kind))).toEqual([]);
  });

  it('has no kind emitted by two producers', () => {
    const kinds = produced().map(({ kind }) => kind);
    expect(kinds.filter((kind, i) => kinds.indexOf(kind) !== i)).toEqual([]);
  });

  it('sends each k3s kind under its own name with the table sentence, severity and remedy (k3s.foreign-process was sent bare)', () => {
    for (const kind of K3S_EVENT_KINDS) {
      const event = EventSchema.parse({ ...eventFromProducer({ kind, at: 0 }), schemaVersion: SCHEMA_VERSION, occurredAt: new Date(0).toISOString() });
      const spec = eventKindSpec(kind);
      expect(event).toMatchObject({ kind, message: spec.sentence, severity: spec.severity });
      expect(event.remedy).toBe(spec.remedy);
    }
    expect(eventFromProducer({ kind: 'k3s.foreign-process', at: 0 }).message).not.toBe('k3s.foreign-process');
  });

  it('gives a problem read from the k3s log the same kind and remedy the event table holds', () => {
    const problem = classifyLine('level=fatal msg="Failed to find memory cgroup (v2)"');
    expect(problem?.kind).toBe('k3s.cgroup-missing');
    expect(problem?.remedy).toBe(eventKindSpec(problem!.kind as EventKind).remedy);
    expect(problem?.remedy).toContain('cmdline.txt');
  });
});
