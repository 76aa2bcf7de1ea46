import type { SystemFiles } from './system-files.js';

/**
 * The facts about the machine that do not change while it runs and that /proc does not give: the firmware's
 * (DMI) name and serial of a PC-style board, and the distribution from os-release. They are read from the
 * files the kernel and the distribution keep, not with systeminformation: loading even four of its modules
 * kept several MiB of RSS on the idle agent for good (docs/benchmarks.md, "Footprint"), and everything it gave
 * the inventory is in these files. The CPU, memory, kernel and hostname come from /proc and Node (inventory.ts).
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

/** Values firmware writes for "not known" (DMI fields of boards nobody filled in), worse than leaving the fact out. */
const PLACEHOLDER = /^(|-|unknown|not specified|none|default string|to be filled by o\.e\.m\.|system product name|0+)$/i;

function known(value: string | undefined): string | undefined {
  const trimmed = value?.replace(/[^\x20-\x7e]/g, '').trim().slice(0, 128);
  return trimmed && !PLACEHOLDER.test(trimmed) ? trimmed : undefined;
}

/** os-release(5): KEY=value lines, the value optionally quoted with " or ' and backslash-escaped. */
export function parseOsRelease(text: string | undefined): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text?.split('\n') ?? []) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!match) continue;
    const raw = match[2]!;
    const quoted = /^(["'])(.*)\1$/.exec(raw);
    fields.set(match[1]!, quoted ? quoted[2]!.replace(/\\(.)/g, '$1') : raw);
  }
  return fields;
}

/** Reads the facts below `files`' root. Synchronous reads of small files; async only to fit the facts source. */
export function fileSystemFacts(files: SystemFiles): SystemFactsSource {
  return async () => {
    const dmi = (name: string) => known(files.read(`sys/class/dmi/id/${name}`, 256));
    // /etc/os-release is the admin's override; /usr/lib/os-release the distribution's own (os-release(5)).
    const osRelease = parseOsRelease(files.read('etc/os-release', 8192) ?? files.read('usr/lib/os-release', 8192));
    return {
      model: known([dmi('sys_vendor'), dmi('product_name')].filter(Boolean).join(' ')),
      // Readable by root only, which the agent is; a user running it gets the inventory without it.
      serial: dmi('product_serial'),
      distro: known(osRelease.get('NAME')),
      release: known(osRelease.get('VERSION') ?? osRelease.get('VERSION_ID')),
    };
  };
}
