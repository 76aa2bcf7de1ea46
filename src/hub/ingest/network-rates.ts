import type { Transaction } from 'kysely';
import type { HubTables } from '../db/tables.js';

/**
 * Network rates (bytes per second) of status samples: a device sends its interfaces' byte counters since boot, so a
 * rate needs the device's previous sample, in the batch or stored. Samples may arrive out of order (a backlog after
 * an outage); each takes the nearest older sample known when it is committed, so a rate is at worst an average over
 * a longer interval. Across a reboot the counters restart: no rate then rather than a wrong one.
 */
export interface NetworkReading {
  deviceId: string;
  sampledAtMs: number;
  rxBytes: number | null;
  txBytes: number | null;
  uptimeSeconds: number | null;
}

export interface NetworkRate {
  rx: number | null;
  tx: number | null;
}

/** Devices per look-up query: SQLite allows at most 500 terms in a compound SELECT. */
const CHUNK = 200;
const NO_RATE: NetworkRate = { rx: null, tx: null };

/** The rate of each reading, in the order given. */
export async function networkRates(trx: Transaction<HubTables>, readings: readonly NetworkReading[]): Promise<NetworkRate[]> {
  const byDevice = new Map<string, number[]>();
  readings.forEach((r, index) => {
    if (r.rxBytes !== null || r.txBytes !== null) byDevice.set(r.deviceId, [...(byDevice.get(r.deviceId) ?? []), index]);
  });
  if (byDevice.size === 0) return readings.map(() => NO_RATE);
  for (const indexes of byDevice.values()) indexes.sort((a, b) => readings[a]!.sampledAtMs - readings[b]!.sampledAtMs);
  const stored = await predecessors(trx, [...byDevice.entries()].map(([deviceId, indexes]) => ({ deviceId, beforeMs: readings[indexes[0]!]!.sampledAtMs })));
  const rates = readings.map(() => NO_RATE);
  for (const [deviceId, indexes] of byDevice) {
    let previous: NetworkReading | undefined = stored.get(deviceId);
    for (const index of indexes) {
      rates[index] = previous ? rateBetween(previous, readings[index]!) : NO_RATE;
      previous = readings[index]!;
    }
  }
  return rates;
}

export function rateBetween(previous: NetworkReading, current: NetworkReading): NetworkRate {
  const seconds = (current.sampledAtMs - previous.sampledAtMs) / 1000;
  if (seconds <= 0) return NO_RATE;
  // Up for less time than since the previous sample: the device booted in between and its counters restarted.
  if (current.uptimeSeconds !== null && current.uptimeSeconds < seconds) return NO_RATE;
  const rate = (now: number | null, before: number | null) => (now === null || before === null || now < before ? null : (now - before) / seconds);
  return { rx: rate(current.rxBytes, previous.rxBytes), tx: rate(current.txBytes, previous.txBytes) };
}

/**
 * Each device's newest known sample older than `beforeMs`. In order (the usual case) that is the newest status the
 * device row holds, read with one query per chunk; only a device whose batch reaches back before it probes the samples.
 */
async function predecessors(trx: Transaction<HubTables>, wanted: readonly { deviceId: string; beforeMs: number }[]): Promise<Map<string, NetworkReading>> {
  const found = new Map<string, NetworkReading>();
  const probe: { deviceId: string; beforeMs: number }[] = [];
  for (let i = 0; i < wanted.length; i += CHUNK) {
    const chunk = wanted.slice(i, i + CHUNK);
    const rows = await trx
      .selectFrom('devices')
      .select(['device_id', 'status_sampled_at_ms', 'status_json'])
      .where('device_id', 'in', chunk.map((w) => w.deviceId))
      .execute();
    const newest = new Map(rows.map((r) => [r.device_id, r]));
    for (const w of chunk) {
      const row = newest.get(w.deviceId);
      if (!row || row.status_sampled_at_ms === null || row.status_json === null) continue;
      if (row.status_sampled_at_ms < w.beforeMs) found.set(w.deviceId, readingOf(w.deviceId, row.status_sampled_at_ms, row.status_json));
      else probe.push(w);
    }
  }
  for (const [deviceId, reading] of await storedPredecessors(trx, probe)) found.set(deviceId, reading);
  return found;
}

/** The counters of a stored status (validated on receipt). */
function readingOf(deviceId: string, sampledAtMs: number, statusJson: string): NetworkReading {
  const network = (JSON.parse(statusJson) as { network?: { rxBytes?: number; txBytes?: number } }).network;
  return { deviceId, sampledAtMs, rxBytes: network?.rxBytes ?? null, txBytes: network?.txBytes ?? null, uptimeSeconds: null };
}

/**
 * Each device's newest stored sample older than `beforeMs`: one index probe per device (ORDER BY ... LIMIT 1 on
 * status_samples_device_time), joined with UNION ALL into one query per chunk; a MAX() over a range would read
 * every earlier sample of the device.
 */
async function storedPredecessors(trx: Transaction<HubTables>, wanted: readonly { deviceId: string; beforeMs: number }[]): Promise<Map<string, NetworkReading>> {
  const found = new Map<string, NetworkReading>();
  for (let i = 0; i < wanted.length; i += CHUNK) {
    const probes = wanted.slice(i, i + CHUNK).map((w, n) =>
      trx.selectFrom((eb) =>
        eb
          .selectFrom('status_samples')
          .select(['device_id', 'sampled_at_ms', 'network_rx_bytes', 'network_tx_bytes'])
          .where('device_id', '=', w.deviceId)
          .where('sampled_at_ms', '<', w.beforeMs)
          .orderBy('sampled_at_ms', 'desc')
          .limit(1)
          .as(`p${n}`),
      ).selectAll(),
    );
    const rows = await probes.slice(1).reduce((query, probe) => query.unionAll(probe), probes[0]!).execute();
    for (const r of rows) {
      found.set(r.device_id, { deviceId: r.device_id, sampledAtMs: r.sampled_at_ms, rxBytes: r.network_rx_bytes, txBytes: r.network_tx_bytes, uptimeSeconds: null });
    }
  }
  return found;
}
