/**
 * The facts about the machine that do not change while it runs, as systeminformation reports them. It spawns
 * a few helpers on some systems (dmidecode, lsb_release...), which is fine once at start and never per interval.
 * Only the four modules needed are loaded, not the package index with its twenty (docker, wifi, printers...):
 * that keeps about 11 MiB of RSS off the idle agent for good (see docs/benchmarks.md, "Telemetry").
 */
export interface SystemFacts {
  model?: string;
  serial?: string;
  cpuModel?: string;
  cpuCores?: number;
  memoryTotalBytes?: number;
  distro?: string;
  release?: string;
  kernel?: string;
  hostname?: string;
}

export type SystemFactsSource = () => Promise<SystemFacts>;

/** Values systeminformation uses for "not known", which are worse than leaving the fact out. */
const PLACEHOLDER = /^(|-|unknown|not specified|none|default string|to be filled by o\.e\.m\.|system product name|0+)$/i;

function known(value: string | undefined): string | undefined {
  const trimmed = value?.trim().slice(0, 128);
  return trimmed && !PLACEHOLDER.test(trimmed) ? trimmed : undefined;
}

export async function systeminformationFacts(): Promise<SystemFacts> {
  const [{ system: systemData }, { cpu: cpuData }, { osInfo }, { mem: memData }] = await Promise.all([
    import('systeminformation/lib/system.js'),
    import('systeminformation/lib/cpu.js'),
    import('systeminformation/lib/osinfo.js'),
    import('systeminformation/lib/memory.js'),
  ]);
  const [system, cpu, os, mem] = await Promise.all([systemData(), cpuData(), osInfo(), memData()]);
  const cpuModel = known([cpu.manufacturer, cpu.brand].filter(known).join(' '));
  return {
    model: known([system.manufacturer, system.model].filter(known).join(' ')),
    serial: known(system.serial),
    cpuModel,
    cpuCores: cpu.cores > 0 ? cpu.cores : undefined,
    memoryTotalBytes: mem.total > 0 ? mem.total : undefined,
    distro: known(os.distro),
    release: known(os.release),
    kernel: known(os.kernel),
    hostname: known(os.hostname),
  };
}
