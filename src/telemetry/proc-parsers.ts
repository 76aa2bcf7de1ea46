import type { ThrottleFlagName } from '../protocol/status.js';

/**
 * Pure parsers for the /proc and /sys files the sampler reads. Each returns undefined for content it does not
 * recognise (truncated, empty, garbage) instead of throwing or producing NaN, so one odd kernel file costs one
 * reading, never a whole sample.
 */

const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

function counter(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const value = Number(text);
  return value <= MAX_COUNTER ? value : undefined;
}

function decimal(text: string | undefined): number | undefined {
  if (text === undefined || !/^-?\d+(?:\.\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/** Aggregate CPU jiffies from the first line of /proc/stat. */
export interface CpuTimes {
  busy: number;
  total: number;
}

export function parseCpuTimes(stat: string | undefined): CpuTimes | undefined {
  const line = stat?.split('\n', 1)[0];
  const match = line ? /^cpu\s+(.*)$/.exec(line.trim()) : null;
  if (!match) return undefined;
  const fields = match[1]!.split(/\s+/).map(counter);
  // user nice system idle are present since Linux 2.6; older ones lack iowait and later fields.
  if (fields.length < 4 || fields.some((f) => f === undefined)) return undefined;
  const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields as number[];
  // guest and guest_nice are already counted in user and nice.
  const idleAll = idle! + iowait;
  const total = user! + nice! + system! + idleAll + irq + softirq + steal;
  return { busy: total - idleAll, total };
}

/** Boot time in seconds since the epoch (the btime line of /proc/stat). */
export function parseBootTime(stat: string | undefined): number | undefined {
  const match = stat ? /^btime (\d+)$/m.exec(stat) : null;
  return match ? counter(match[1]) : undefined;
}

export function parseLoadAvg(text: string | undefined): [number, number, number] | undefined {
  const parts = text?.trim().split(/\s+/) ?? [];
  const values = parts.slice(0, 3).map(decimal);
  if (values.length < 3 || values.some((v) => v === undefined || v < 0)) return undefined;
  return values as [number, number, number];
}

export interface MemoryReading {
  totalBytes: number;
  availableBytes: number;
  swapTotalBytes: number;
  swapFreeBytes: number;
}

export function parseMeminfo(text: string | undefined): MemoryReading | undefined {
  if (!text) return undefined;
  const kib = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(\w+(?:\(\w+\))?):\s+(\d+)(?: kB)?$/.exec(line.trim());
    const value = counter(match?.[2]);
    if (match && value !== undefined) kib.set(match[1]!, value);
  }
  const total = kib.get('MemTotal');
  if (total === undefined) return undefined;
  // MemAvailable exists since Linux 3.14; before that free + page cache is the usual estimate.
  const available =
    kib.get('MemAvailable') ?? (kib.get('MemFree') ?? 0) + (kib.get('Buffers') ?? 0) + (kib.get('Cached') ?? 0);
  return {
    totalBytes: total * 1024,
    availableBytes: Math.min(available, total) * 1024,
    swapTotalBytes: (kib.get('SwapTotal') ?? 0) * 1024,
    swapFreeBytes: (kib.get('SwapFree') ?? 0) * 1024,
  };
}

/**
 * Interfaces whose traffic is not the device's own: loopback, and the virtual ones a k3s node grows (pod veths,
 * CNI bridges, overlays), which would count every pod packet twice.
 */
const VIRTUAL_INTERFACE = /^(lo|veth|cni|flannel|docker|br-|virbr|kube-|tunl|vxlan|cali|ifb|dummy|tailscale|wg)/;

export function isPhysicalInterface(name: string): boolean {
  return !VIRTUAL_INTERFACE.test(name);
}

export function parseNetDev(text: string | undefined): { rxBytes: number; txBytes: number } | undefined {
  if (!text) return undefined;
  let rxBytes = 0;
  let txBytes = 0;
  let seen = false;
  for (const line of text.split('\n').slice(2)) {
    const match = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!match) continue;
    const fields = match[2]!.trim().split(/\s+/);
    const rx = counter(fields[0]);
    const tx = counter(fields[8]);
    if (rx === undefined || tx === undefined) continue;
    seen = true;
    if (!isPhysicalInterface(match[1]!)) continue;
    rxBytes += rx;
    txBytes += tx;
  }
  return seen ? { rxBytes, txBytes } : undefined;
}

export function parseUptime(text: string | undefined): number | undefined {
  const value = decimal(text?.trim().split(/\s+/)[0]);
  return value !== undefined && value >= 0 ? value : undefined;
}

export interface CpuInfo {
  /** "model name" (x86, some arm64), else the ARM "Hardware" line. */
  model?: string;
  hardware?: string;
  /** The board serial the Raspberry Pi firmware puts in /proc/cpuinfo. */
  serial?: string;
  revision?: string;
  /** Board model line some ARM kernels add ("Model : Raspberry Pi ..."). */
  boardModel?: string;
  processors: number;
}

export function parseCpuinfo(text: string | undefined): CpuInfo | undefined {
  if (!text) return undefined;
  const info: CpuInfo = { processors: 0 };
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = clean(line.slice(colon + 1));
    if (key === 'processor') info.processors += 1;
    else if (!value) continue;
    else if (key === 'model name' || key === 'cpu model') info.model ??= value;
    else if (key === 'hardware') info.hardware = value;
    else if (key === 'serial') info.serial = value;
    else if (key === 'revision') info.revision = value;
    // x86 has a numeric "model" line too; the ARM board line is words.
    else if (key === 'model' && /[a-z]/i.test(value)) info.boardModel = value;
  }
  return info.processors > 0 || info.hardware || info.serial ? info : undefined;
}

/** Device-tree strings end in NUL; anything beyond printable ASCII is dropped and the length is bounded. */
export function parseDeviceTreeString(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  return clean(text.split('\0', 1)[0]!) || undefined;
}

function clean(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '').trim().slice(0, 128);
}

/** Thermal zones and hwmon report millidegrees Celsius. Readings outside what silicon survives are faults. */
export function parseMillidegrees(text: string | undefined): number | undefined {
  const value = decimal(text?.trim());
  if (value === undefined) return undefined;
  const celsius = value / 1000;
  return celsius > -100 && celsius < 200 ? Math.round(celsius * 10) / 10 : undefined;
}

/** cpufreq reports kHz. */
export function parseKilohertzAsMegahertz(text: string | undefined): number | undefined {
  const value = counter(text?.trim());
  return value !== undefined && value > 0 ? Math.round(value / 1000) : undefined;
}

const FLAG_BITS: readonly ThrottleFlagName[] = ['under-voltage', 'arm-frequency-capped', 'throttled', 'soft-temperature-limit'];

export interface ThrottleReading {
  bits: number;
  now: ThrottleFlagName[];
  occurred: ThrottleFlagName[];
}

/**
 * The Raspberry Pi firmware's get_throttled value, printed by the kernel as bare hex ("50005"); `vcgencmd`
 * prints it as "throttled=0x50005", which is accepted too. Bits 0-3 are the condition now, 16-19 since boot.
 */
export function parseThrottled(text: string | undefined): ThrottleReading | undefined {
  const match = text ? /^(?:throttled=)?(?:0x)?([0-9a-f]{1,8})$/i.exec(text.trim()) : null;
  if (!match) return undefined;
  const bits = parseInt(match[1]!, 16);
  return {
    bits,
    now: FLAG_BITS.filter((_, i) => (bits & (1 << i)) !== 0),
    occurred: FLAG_BITS.filter((_, i) => (bits & (1 << (16 + i))) !== 0),
  };
}

/**
 * Newer Raspberry Pi kernels report under-voltage through hwmon ("rpi_volt", in0_lcrit_alarm: 0 or 1) and
 * deprecate get_throttled. That alarm is the only flag there, so it maps to bit 0 and nothing "since boot".
 */
export function parseUnderVoltageAlarm(text: string | undefined): ThrottleReading | undefined {
  const value = text?.trim();
  if (value !== '0' && value !== '1') return undefined;
  return value === '1' ? { bits: 1, now: ['under-voltage'], occurred: [] } : { bits: 0, now: [], occurred: [] };
}
