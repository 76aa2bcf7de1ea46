import type { CpuTimes } from './proc-parsers.js';

/**
 * CPU busy percentage between two readings of /proc/stat. undefined when there is nothing to compare: the same
 * reading twice, or counters that went backwards (a different boot, a container's virtualised /proc, a fixture).
 */
export function cpuPercent(previous: CpuTimes | undefined, current: CpuTimes | undefined): number | undefined {
  if (!previous || !current) return undefined;
  const total = current.total - previous.total;
  const busy = current.busy - previous.busy;
  if (total <= 0 || busy < 0 || busy > total) return undefined;
  return Math.round((busy / total) * 1000) / 10;
}
