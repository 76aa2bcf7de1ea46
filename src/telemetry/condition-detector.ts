import { eventKindSpec, type EventInput, type EventKind } from '../protocol/event.js';
import type { RawSample } from './sampler.js';

export interface ConditionThresholds {
  /** disk.low is raised below this free share (percent) or below diskLowBytes, and cleared above clear levels. */
  diskLowPercent: number;
  diskClearPercent: number;
  diskLowBytes: number;
  temperatureHighC: number;
  temperatureClearC: number;
  /** A wall clock that moved this much more (or less) than the monotonic clock between samples is a jump. */
  clockJumpSeconds: number;
}

export const DEFAULT_THRESHOLDS: ConditionThresholds = {
  diskLowPercent: 10,
  diskClearPercent: 15,
  diskLowBytes: 256 * 1024 * 1024,
  temperatureHighC: 80,
  temperatureClearC: 75,
  clockJumpSeconds: 120,
};

const GIB = 1024 ** 3;

/** The kinds the detector raises, clears or reports (protocol/event.ts holds their severity, sentence and remedy). */
export const CONDITION_EVENT_KINDS = ['disk.low', 'temperature.high', 'power.under-voltage', 'power.throttled', 'clock.jump'] as const satisfies readonly EventKind[];
type ConditionEventKind = (typeof CONDITION_EVENT_KINDS)[number];
type ConditionEvent = Omit<EventInput, 'state' | 'severity' | 'kind'> & { kind: ConditionEventKind };

/**
 * Turns consecutive samples into transitions: a condition is raised when it starts and cleared when it ends,
 * never repeated while it lasts. Thresholds have hysteresis (raise at 10 %, clear at 15 %), so a reading that
 * hovers at the limit does not toggle; what still flaps is held back by the event gate's rate limit.
 */
export class ConditionDetector {
  private readonly active = new Set<string>();
  private previous: RawSample | undefined;

  constructor(private readonly thresholds: ConditionThresholds = DEFAULT_THRESHOLDS) {}

  evaluate(sample: RawSample): EventInput[] {
    const events: EventInput[] = [];
    const t = this.thresholds;
    for (const disk of sample.disks) {
      if (disk.totalBytes <= 0) continue;
      const freePercent = (disk.freeBytes / disk.totalBytes) * 100;
      const low = freePercent < t.diskLowPercent || disk.freeBytes < t.diskLowBytes;
      const clear = freePercent > t.diskClearPercent && disk.freeBytes > t.diskLowBytes * 1.5;
      const text = `${freePercent.toFixed(1)}% free (${(disk.freeBytes / GIB).toFixed(1)} GiB of ${(disk.totalBytes / GIB).toFixed(1)} GiB)`;
      this.track(events, `disk.low/${disk.name}`, low, clear, {
        kind: 'disk.low',
        key: disk.name,
        message: `filesystem of ${disk.name} has ${text}`,
        remedy:
          disk.name === 'k3s'
            ? 'prune unused images (k3s crictl rmi --prune) or grow the filesystem'
            : 'free space on the filesystem of the state directory; the outbox may start dropping old reports',
        detail: { freeBytes: disk.freeBytes, totalBytes: disk.totalBytes },
      });
    }
    if (sample.temperatureC !== undefined) {
      const c = sample.temperatureC;
      this.track(events, 'temperature.high', c >= t.temperatureHighC, c < t.temperatureClearC, {
        kind: 'temperature.high',
        message: `SoC temperature is ${c.toFixed(1)} °C`,
        detail: { temperatureC: c },
      });
    }
    if (sample.throttle) {
      const { now, bits } = sample.throttle;
      const underVoltage = now.includes('under-voltage');
      this.track(events, 'power.under-voltage', underVoltage, !underVoltage, {
        kind: 'power.under-voltage',
        message: 'the supply voltage is below the safe level',
        detail: { bits },
      });
      const slowed = now.some((flag) => flag !== 'under-voltage');
      this.track(events, 'power.throttled', slowed, !slowed, {
        kind: 'power.throttled',
        message: `the firmware limits the CPU: ${now.filter((f) => f !== 'under-voltage').join(', ') || 'no longer'}`,
        detail: { bits },
      });
    }
    const jump = this.clockJump(sample);
    if (jump !== undefined) {
      events.push({
        ...withTableDefaults({
          kind: 'clock.jump',
          message: `the wall clock jumped ${jump > 0 ? 'forward' : 'back'} by ${Math.abs(jump).toFixed(0)} s`,
          detail: { jumpSeconds: Math.round(jump) },
        }),
        state: 'occurred',
      });
    }
    this.previous = sample;
    return events;
  }

  private track(
    events: EventInput[],
    id: string,
    raise: boolean,
    clear: boolean,
    event: ConditionEvent,
  ): void {
    if (!this.active.has(id) && raise) {
      this.active.add(id);
      events.push({ ...withTableDefaults(event), state: 'raised' });
    } else if (this.active.has(id) && clear) {
      this.active.delete(id);
      events.push({ ...withTableDefaults(event), state: 'cleared', severity: 'info' });
    }
  }

  private clockJump(sample: RawSample): number | undefined {
    if (!this.previous) return undefined;
    const wall = (sample.sampledAt.getTime() - this.previous.sampledAt.getTime()) / 1000;
    const monotonic = (sample.monotonicMs - this.previous.monotonicMs) / 1000;
    const jump = wall - monotonic;
    return Math.abs(jump) >= this.thresholds.clockJumpSeconds ? jump : undefined;
  }
}

/** The severity is the table's; so is the remedy unless the detector knows a more precise one (which disk). */
function withTableDefaults(event: ConditionEvent): Omit<EventInput, 'state'> {
  const { severity, remedy } = eventKindSpec(event.kind);
  return { ...(remedy ? { remedy } : {}), ...event, severity };
}
