import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The second clone signal: something of the board itself that a disk image cannot carry along. An x86 box
 * cloned from a disk that kept its /etc/machine-id has no device-tree serial, but its firmware's DMI product uuid
 * (root-readable) or its network card's burnt-in MAC address still differ from the original's.
 */

/** Values that vendors ship on every unit of a board: they tell nothing apart. */
const PLACEHOLDER_UUIDS = new Set(['03000200-0400-0500-0006-000700080009', '00020003-0004-0005-0006-000700080009']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
const MAX_INTERFACES = 64;

/** "dmi:<uuid>" when the firmware has a real one, else "mac:<address>" of the first physical card, else undefined. */
export function readHardwareSignal(dmiProductUuidPath: string | undefined, netClassDir: string | undefined): string | undefined {
  const uuid = dmiProductUuidPath ? dmiProductUuid(dmiProductUuidPath) : undefined;
  if (uuid) return `dmi:${uuid}`;
  const mac = netClassDir ? primaryMac(netClassDir) : undefined;
  return mac ? `mac:${mac}` : undefined;
}

function dmiProductUuid(path: string): string | undefined {
  const uuid = readSmall(path)?.trim().toLowerCase();
  if (!uuid || !UUID.test(uuid) || PLACEHOLDER_UUIDS.has(uuid)) return undefined;
  return /^[0-]+$/.test(uuid) || /^[f-]+$/.test(uuid) ? undefined : uuid;
}

/**
 * The burnt-in address of the first physical card by name (eth0 before wlan0; a `device` link marks hardware, so
 * bridges, veths and the CNI's interfaces are skipped). Locally administered addresses are skipped too: some
 * boards and Wi-Fi drivers make one up at every boot, which would look like a new board each time.
 */
function primaryMac(netClassDir: string): string | undefined {
  let names: string[];
  try {
    names = readdirSync(netClassDir).sort().slice(0, MAX_INTERFACES);
  } catch {
    return undefined;
  }
  for (const name of names) {
    if (!existsSync(join(netClassDir, name, 'device'))) continue;
    const address = readSmall(join(netClassDir, name, 'address'))?.trim().toLowerCase();
    if (!address || !MAC.test(address) || address === '00:00:00:00:00:00') continue;
    if ((Number.parseInt(address.slice(0, 2), 16) & 0x02) !== 0) continue;
    return address;
  }
  return undefined;
}

function readSmall(path: string): string | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > 256 ? undefined : text;
  } catch {
    return undefined;
  }
}
