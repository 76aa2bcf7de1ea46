import { z } from 'zod';
import { perOutboxClass } from './outbox-classes.js';
import { SCHEMA_VERSION } from './topics.js';

/**
 * `{root}/devices/{id}/status`, QoS 1, through the outbox. One sample of how the device is doing. `sampledAt` is
 * the time of measurement, not of sending: a sample that waited in the outbox through an outage keeps it, and
 * the link marks it `historical`. Readings the device cannot make (no thermal sensor, not a Raspberry Pi) are
 * left out rather than sent as zero. Kept small (about 0.6 KiB) because it is sent every interval.
 */
const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const percent = z.number().min(0).max(100);

const perClass = perOutboxClass(count);

export const THROTTLE_FLAGS = ['under-voltage', 'arm-frequency-capped', 'throttled', 'soft-temperature-limit'] as const;
const ThrottleFlag = z.enum(THROTTLE_FLAGS);

export const StatusSchema = z.object({
  schemaVersion: z.literal(SCHEMA_VERSION),
  /** Increases by one per sample within a run of the agent; restarts at 1 with the agent. */
  seq: z.int().min(1).max(Number.MAX_SAFE_INTEGER),
  sampledAt: z.iso.datetime(),
  /** Set by the link when the sample is sent from the backlog after an outage. */
  historical: z.boolean().optional(),
  uptimeSeconds: z.number().min(0).optional(),
  cpu: z.object({
    /** Busy share of all cores since the previous sample. */
    percent: percent.optional(),
    load: z.tuple([z.number().min(0), z.number().min(0), z.number().min(0)]).optional(),
    mhz: z.number().min(0).optional(),
  }),
  memory: z
    .object({ totalBytes: count, availableBytes: count, swapTotalBytes: count, swapFreeBytes: count })
    .optional(),
  /** The filesystems of fleetlet's state directory and of k3s's data directory. */
  disks: z
    .array(z.object({ name: z.enum(['state', 'k3s']), totalBytes: count, freeBytes: count }))
    .max(2),
  temperatureC: z.number().min(-100).max(200).optional(),
  /** Byte counters of the physical interfaces since boot (the fleet side computes rates). */
  network: z.object({ rxBytes: count, txBytes: count }).optional(),
  /** Raspberry Pi firmware flags (the bits of `vcgencmd get_throttled`), when the firmware exposes them. */
  throttle: z
    .object({ bits: z.int().min(0).max(0xffffffff), now: z.array(ThrottleFlag).max(4), occurred: z.array(ThrottleFlag).max(4) })
    .optional(),
  k3s: z.object({
    state: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
    healthy: z.boolean(),
    version: z.string().max(64).optional(),
  }),
  link: z.object({ connected: z.boolean(), since: z.iso.datetime().optional() }),
  outbox: z.object({ depth: perClass, dropped: perClass }),
  /** Set by the outbox: the same on every re-send, for deduplication downstream. */
  messageId: z.string().max(64).optional(),
  /** Set by the outbox once anything was dropped: counters since the state database was created. */
  outboxDrops: perClass.extend({ diskFull: count }).optional(),
});

export type Status = z.infer<typeof StatusSchema>;
export type ThrottleFlagName = z.infer<typeof ThrottleFlag>;

export const STATUS_EXAMPLE: Status = {
  schemaVersion: SCHEMA_VERSION,
  seq: 2881,
  sampledAt: '2026-03-01T08:15:30.004Z',
  uptimeSeconds: 86_412.5,
  cpu: { percent: 7.4, load: [0.31, 0.42, 0.4], mhz: 1500 },
  memory: { totalBytes: 3_981_438_976, availableBytes: 2_874_605_568, swapTotalBytes: 104_853_504, swapFreeBytes: 104_853_504 },
  disks: [
    { name: 'state', totalBytes: 31_159_926_784, freeBytes: 24_036_458_496 },
    { name: 'k3s', totalBytes: 31_159_926_784, freeBytes: 24_036_458_496 },
  ],
  temperatureC: 51.6,
  network: { rxBytes: 1_204_338_121, txBytes: 88_301_442 },
  throttle: { bits: 0x50000, now: [], occurred: ['under-voltage', 'throttled'] },
  k3s: { state: 'running', healthy: true, version: 'v1.36.3+k3s1' },
  link: { connected: true, since: '2026-03-01T07:02:11.950Z' },
  outbox: { depth: { status: 0, event: 0, result: 0 }, dropped: { status: 0, event: 0, result: 0 } },
};
