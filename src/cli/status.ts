import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { DATABASE_FILE } from '../store/db.js';
import { InventorySchema, type Inventory } from '../protocol/inventory.js';
import { StatusSchema, type Status } from '../protocol/status.js';
import { INVENTORY_KEY, readSnapshot, STATUS_KEY } from '../telemetry/snapshot-store.js';
import { STATUS_SOCKET_FILE } from '../telemetry/status-socket.js';
import { EXIT } from './exit-codes.js';
import { loadSelectedConfig } from './load-selected-config.js';
import type { CliIo, ConfigSelection } from './program.js';
import { errorMessage, errorReason, isErrno } from '../lib/errors.js';

/**
 * `fleetlet status`: the device at a glance. It asks the running agent first (its status socket, which only the
 * agent's user can open), and otherwise reads the last snapshot from the state database, opened read-only so that
 * it can never disturb the agent.
 */
export interface StatusView {
  source: 'agent' | 'database';
  pid?: number;
  status?: Status;
  inventory?: Inventory;
  /** When the database snapshot was written (ms since the epoch). */
  savedAt?: number;
}

export interface StatusOptions {
  selection: ConfigSelection;
  json: boolean;
  /** better-sqlite3's native addon for a state directory, when the single binary carries its own. */
  nativeBinding?: (stateDir: string) => unknown;
  now?: () => Date;
}

const MAX_RESPONSE_BYTES = 256 * 1024;

export async function runStatus(options: StatusOptions, io: CliIo): Promise<number> {
  const loaded = loadSelectedConfig(options.selection, io);
  if (!loaded) return EXIT.CONFIG;
  const { config } = loaded;
  const socket = join(config.stateDir, STATUS_SOCKET_FILE);
  const socketEnabled = config.telemetry.statusSocket.enabled;
  let view = socketEnabled ? await fromAgent(socket) : undefined;
  let problem: string | undefined;
  if (!view) {
    try {
      view = fromDatabase(join(config.stateDir, DATABASE_FILE), options.nativeBinding?.(config.stateDir));
    } catch (err) {
      problem = errorMessage(err);
    }
  }
  if (!view) {
    io.stderr(`fleetlet: no status: the agent does not answer${socketEnabled ? ` on ${socket}` : ' (telemetry.statusSocket is off)'} and ${problem ?? 'the state database has no snapshot yet'}\n`);
    return EXIT.FAILURE;
  }
  io.stdout(options.json ? `${JSON.stringify(view, null, 2)}\n` : renderStatus(view, options.now?.() ?? new Date()));
  return EXIT.OK;
}

/** The running agent's view from its status socket, or undefined when nothing (valid) answers quickly. */
export async function fromAgent(socketPath: string, timeoutMs = 1500): Promise<StatusView | undefined> {
  const text = await getBounded(socketPath, '/status', timeoutMs, MAX_RESPONSE_BYTES);
  if (text === undefined) return undefined;
  try {
    const body = JSON.parse(text) as { pid?: unknown; status?: unknown; inventory?: unknown };
    const status = StatusSchema.safeParse(body.status);
    const inventory = InventorySchema.safeParse(body.inventory);
    // An agent of another version: the database may know more.
    if (!status.success && !inventory.success) return undefined;
    return {
      source: 'agent',
      pid: typeof body.pid === 'number' ? body.pid : undefined,
      status: status.success ? status.data : undefined,
      inventory: inventory.success ? inventory.data : undefined,
    };
  } catch {
    return undefined;
  }
}

/**
 * The body of a GET over a unix socket, or undefined on any failure (no socket, not allowed to connect, an error
 * status, a timeout) or once it exceeds `limit` bytes.
 */
function getBounded(socketPath: string, path: string, timeoutMs: number, limit: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return resolve(undefined);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) {
          req.destroy();
          return resolve(undefined);
        }
        chunks.push(chunk);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** The last snapshot in the state database, opened read-only; undefined when there is none yet. */
export function fromDatabase(file: string, nativeBinding?: unknown): StatusView | undefined {
  if (!existsSync(file)) throw new Error(`there is no state database at ${file}`);
  let db: BetterSqlite3.Database;
  try {
    db = new BetterSqlite3(file, { readonly: true, fileMustExist: true, ...(nativeBinding ? { nativeBinding: nativeBinding as string } : {}) });
  } catch (err) {
    throw new Error(`cannot open ${file} read-only (${errorReason(err)})${isErrno(err, 'SQLITE_CANTOPEN') ? '; run as the user the agent runs as' : ''}`);
  }
  try {
    db.pragma('busy_timeout = 2000');
    const status = readSnapshot(db, STATUS_KEY);
    const inventory = readSnapshot(db, INVENTORY_KEY);
    const parsedStatus = StatusSchema.safeParse(status?.value);
    const parsedInventory = InventorySchema.safeParse(inventory?.value);
    if (!parsedStatus.success && !parsedInventory.success) return undefined;
    return {
      source: 'database',
      status: parsedStatus.success ? parsedStatus.data : undefined,
      inventory: parsedInventory.success ? parsedInventory.data : undefined,
      savedAt: status?.updatedAt,
    };
  } catch (err) {
    // A database from before telemetry existed, or one being migrated: no snapshot to show.
    if (isErrno(err, 'SQLITE_ERROR')) return undefined;
    throw err;
  } finally {
    db.close();
  }
}

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

function size(bytes: number): string {
  return bytes >= GIB ? `${(bytes / GIB).toFixed(1)} GiB` : `${Math.round(bytes / MIB)} MiB`;
}

function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

function ago(iso: string | number, now: Date): string {
  return `${duration((now.getTime() - new Date(iso).getTime()) / 1000)} ago`;
}

/** The person-friendly summary: one line per subject, problems marked with "!". */
export function renderStatus(view: StatusView, now: Date): string {
  const { status: s, inventory: inv } = view;
  const lines: [string, string][] = [];
  const headline =
    view.source === 'agent'
      ? `agent running${view.pid ? ` (pid ${view.pid})` : ''}`
      : `agent not answering; last snapshot from the state database${view.savedAt ? `, ${ago(view.savedAt, now)}` : ''}`;
  if (inv) {
    const labels = Object.entries(inv.labels).map(([k, v]) => `${k}=${v}`).join(' ');
    lines.push(['Device', [inv.deviceId, inv.name ? `"${inv.name}"` : '', inv.groups.length ? `groups ${inv.groups.join(', ')}` : '', labels ? `labels ${labels}` : ''].filter(Boolean).join('  ')]);
    const hw = inv.hardware;
    lines.push(['Hardware', `${hw.model}, ${hw.arch}, ${hw.cpuCores} cores, ${size(hw.memoryTotalBytes)} RAM${hw.serial ? `, serial ${hw.serial}` : ''}`]);
    lines.push(['System', `${inv.os.distro}${inv.os.release ? ` ${inv.os.release}` : ''}, kernel ${inv.os.kernel}, fleetlet ${inv.fleetletVersion}`]);
  }
  if (s) {
    lines.push(['k3s', `${s.k3s.state}${s.k3s.healthy ? ', healthy' : ', not healthy !'}${s.k3s.version ? `, ${s.k3s.version}` : ''}`]);
    lines.push(['Link', s.link.connected ? `connected${s.link.since ? ` since ${ago(s.link.since, now)}` : ''}` : `not connected${s.link.since ? ` since ${ago(s.link.since, now)}` : ''} !`]);
    const cpu = [
      s.cpu.percent !== undefined ? `${s.cpu.percent.toFixed(1)} %` : undefined,
      s.cpu.load ? `load ${s.cpu.load.map((l) => l.toFixed(2)).join(' ')}` : undefined,
      s.cpu.mhz !== undefined ? `${s.cpu.mhz} MHz` : undefined,
      s.temperatureC !== undefined ? `${s.temperatureC.toFixed(1)} °C${s.temperatureC >= 80 ? ' !' : ''}` : undefined,
    ].filter(Boolean);
    lines.push(['CPU', cpu.join(', ') || 'no reading']);
    if (s.memory) {
      const m = s.memory;
      const swap = m.swapTotalBytes > 0 ? `; swap ${size(m.swapFreeBytes)} free of ${size(m.swapTotalBytes)}` : '; no swap';
      lines.push(['Memory', `${size(m.availableBytes)} available of ${size(m.totalBytes)}${swap}`]);
    }
    for (const d of s.disks) {
      const percent = d.totalBytes > 0 ? (d.freeBytes / d.totalBytes) * 100 : 0;
      lines.push([`Disk ${d.name}`, `${size(d.freeBytes)} free of ${size(d.totalBytes)} (${percent.toFixed(0)} %)${percent < 10 ? ' !' : ''}`]);
    }
    if (s.throttle) {
      const { now: active, occurred } = s.throttle;
      lines.push([
        'Power',
        active.length ? `${active.join(', ')} now !` : occurred.length ? `ok now; since boot: ${occurred.join(', ')}` : 'ok',
      ]);
    }
    const depth = s.outbox.depth;
    const dropped = s.outbox.dropped.status + s.outbox.dropped.event + s.outbox.dropped.result;
    lines.push(['Outbox', `${depth.status} status, ${depth.event} events, ${depth.result} results waiting; ${dropped ? `${dropped} dropped !` : 'none dropped'}`]);
    if (s.uptimeSeconds !== undefined) lines.push(['Uptime', duration(s.uptimeSeconds)]);
    lines.push(['Sample', `#${s.seq}, ${ago(s.sampledAt, now)}`]);
  }
  const width = Math.max(...lines.map(([k]) => k.length));
  return `fleetlet: ${headline}\n${lines.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n')}\n`;
}
