import type { ThrottleFlagName } from '../protocol/status.js';
import { cpuPercent } from './cpu-math.js';
import type { DiskSpace, DiskSpaceReader } from './disk-space.js';
import {
  parseCpuTimes,
  parseKilohertzAsMegahertz,
  parseLoadAvg,
  parseMeminfo,
  parseMillidegrees,
  parseNetDev,
  parseThrottled,
  parseUnderVoltageAlarm,
  parseUptime,
  type CpuTimes,
  type MemoryReading,
} from './proc-parsers.js';
import type { SystemFiles } from './system-files.js';

export interface DiskToWatch {
  name: 'state' | 'k3s';
  path: string;
}

/** One measurement of the device; each reading is absent when the system does not offer it. */
export interface RawSample {
  sampledAt: Date;
  /** Monotonic milliseconds at the time of the sample, to tell clock jumps from elapsed time. */
  monotonicMs: number;
  uptimeSeconds?: number;
  cpuPercent?: number;
  load?: [number, number, number];
  cpuMhz?: number;
  memory?: MemoryReading;
  disks: (DiskSpace & { name: DiskToWatch['name'] })[];
  temperatureC?: number;
  network?: { rxBytes: number; txBytes: number };
  throttle?: { bits: number; now: ThrottleFlagName[]; occurred: ThrottleFlagName[] };
}

export interface SamplerOptions {
  files: SystemFiles;
  disks: readonly DiskToWatch[];
  diskSpace: DiskSpaceReader;
  now?: () => Date;
  monotonicMs?: () => number;
  /** Readings of /proc/stat closer together than this give no percentage (a few jiffies are all noise). */
  minCpuIntervalMs?: number;
}

const THROTTLED_FILE = 'sys/devices/platform/soc/soc:firmware/get_throttled';
const CPUFREQ_FILE = 'sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq';
// /proc/stat's first line is all we need; its interrupt lines can be tens of KiB on big machines.
const STAT_READ_LIMIT = 4096;

/**
 * The per-interval sample: a dozen small reads of /proc and /sys and two statfs calls, no child processes.
 * Which sensors exist is found once at construction, so an interval does not list directories.
 */
export class Sampler {
  private readonly thermalFiles: string[];
  private readonly hasThrottled: boolean;
  private readonly voltageAlarmFile: string | undefined;
  private readonly hasCpufreq: boolean;
  private previousCpu: { times: CpuTimes; atMs: number } | undefined;
  private readonly now: () => Date;
  private readonly monotonicMs: () => number;

  constructor(private readonly options: SamplerOptions) {
    this.now = options.now ?? (() => new Date());
    this.monotonicMs = options.monotonicMs ?? (() => performance.now());
    const files = options.files;
    this.thermalFiles = files
      .list('sys/class/thermal')
      .filter((name) => name.startsWith('thermal_zone'))
      .map((zone) => `sys/class/thermal/${zone}/temp`)
      .filter((file) => files.read(file, 64) !== undefined);
    this.hasThrottled = files.read(THROTTLED_FILE, 64) !== undefined;
    this.voltageAlarmFile = this.hasThrottled ? undefined : findVoltageAlarm(files);
    this.hasCpufreq = files.read(CPUFREQ_FILE, 64) !== undefined;
    // A first reading, so that the first full interval already has a CPU percentage.
    const times = parseCpuTimes(files.read('proc/stat', STAT_READ_LIMIT));
    this.previousCpu = times && { times, atMs: this.monotonicMs() };
  }

  /** How long until a sample can carry a CPU percentage: the window since the last reading is long enough. */
  msUntilCpuReading(): number {
    if (!this.previousCpu) return 0;
    const elapsed = this.monotonicMs() - this.previousCpu.atMs;
    return Math.max(0, Math.ceil((this.options.minCpuIntervalMs ?? 1000) - elapsed));
  }

  sample(): RawSample {
    const { files } = this.options;
    const sampledAt = this.now();
    const monotonicMs = this.monotonicMs();
    const cpuTimes = parseCpuTimes(files.read('proc/stat', STAT_READ_LIMIT));
    let percent: number | undefined;
    const previous = this.previousCpu;
    if (!previous || monotonicMs - previous.atMs >= (this.options.minCpuIntervalMs ?? 1000)) {
      percent = cpuPercent(previous?.times, cpuTimes);
      // Keep the last good reading: one garbled read must not spoil the next percentage as well.
      if (cpuTimes) this.previousCpu = { times: cpuTimes, atMs: monotonicMs };
    }
    const disks: RawSample['disks'] = [];
    for (const disk of this.options.disks) {
      const space = this.options.diskSpace(disk.path);
      if (space) disks.push({ name: disk.name, ...space });
    }
    return {
      sampledAt,
      monotonicMs,
      uptimeSeconds: parseUptime(files.read('proc/uptime', 256)),
      cpuPercent: percent,
      load: parseLoadAvg(files.read('proc/loadavg', 256)),
      cpuMhz: this.hasCpufreq ? parseKilohertzAsMegahertz(files.read(CPUFREQ_FILE, 64)) : undefined,
      memory: parseMeminfo(files.read('proc/meminfo', 8192)),
      disks,
      temperatureC: this.hottestZone(),
      network: parseNetDev(files.read('proc/net/dev', 16 * 1024)),
      throttle: this.readThrottle(),
    };
  }

  private readThrottle(): RawSample['throttle'] {
    const files = this.options.files;
    if (this.hasThrottled) return parseThrottled(files.read(THROTTLED_FILE, 64));
    return this.voltageAlarmFile ? parseUnderVoltageAlarm(files.read(this.voltageAlarmFile, 16)) : undefined;
  }

  private hottestZone(): number | undefined {
    let hottest: number | undefined;
    for (const file of this.thermalFiles) {
      const celsius = parseMillidegrees(this.options.files.read(file, 64));
      if (celsius !== undefined && (hottest === undefined || celsius > hottest)) hottest = celsius;
    }
    return hottest;
  }
}

function findVoltageAlarm(files: SystemFiles): string | undefined {
  for (const hwmon of files.list('sys/class/hwmon')) {
    if (files.read(`sys/class/hwmon/${hwmon}/name`, 64)?.trim() === 'rpi_volt') return `sys/class/hwmon/${hwmon}/in0_lcrit_alarm`;
  }
  return undefined;
}
