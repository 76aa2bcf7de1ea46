// The sandbox's screen: what the fleet sees of the device, the feed, and the agent log's tail, laid out to fit the
// terminal (80x24 at the least) without scrolling. Pure: the sandbox gives it the state and the terminal size.

export interface SandboxScreen {
  /** The fixed lines on top: where things are, how to send a command yourself, the hub's URL once there is one. */
  header: string[];
  devices: Map<string, { presence?: string; status?: string; k3s?: string; lastSeen?: Date }>;
  feed: readonly string[];
  logTail: readonly string[];
}

const LOG_TAIL_ROWS = 5;

export function screenLines(screen: SandboxScreen, rows: number, columns: number): string[] {
  const top = [...screen.header];
  if (screen.devices.size === 0) top.push('fleet: no device has said anything yet');
  for (const [id, view] of screen.devices) {
    top.push(`${id} ${view.presence ?? 'no presence yet'}, last seen ${view.lastSeen?.toISOString().slice(11, 19) ?? '-'}`);
    top.push(`  status ${view.status ?? 'none yet'}`);
    top.push(`  k3s    ${view.k3s ?? 'no report yet'}`);
  }
  const log = screen.logTail.slice(-LOG_TAIL_ROWS);
  // Two titles; the feed gets what is left, at least one line.
  const feedRoom = Math.max(1, rows - top.length - log.length - 2);
  const lines = [...top, '-- what the fleet sees', ...screen.feed.slice(-feedRoom), '-- agent log', ...log];
  return lines.slice(0, rows).map((line) => (line.length > columns ? `${line.slice(0, columns - 1)}~` : line));
}

/** Fields of the agent's JSON log lines worth a place on a small screen, besides level and message. */
const LOG_FIELDS = ['reason', 'code', 'error', 'delayMs', 'event', 'commandId', 'type', 'status', 'depth', 'broker'];

/** One JSON log line as "level message key=value ...", keeping what says why and what happens next. */
export function compactLogLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof entry.time === 'number' ? `${new Date(entry.time).toISOString().slice(11, 19)} ` : '';
  const message = typeof entry.msg === 'string' ? entry.msg : '';
  const fields = LOG_FIELDS.filter((key) => entry[key] !== undefined && !message.includes(String(entry[key])))
    .map((key) => `${key}=${typeof entry[key] === 'object' ? JSON.stringify(entry[key]) : String(entry[key])}`);
  const err = entry.err as { message?: unknown } | undefined;
  if (typeof err?.message === 'string') fields.push(`err=${err.message.split('\n')[0]}`);
  return `${time}${String(entry.level ?? '?')} ${message}${fields.length > 0 ? ` ${fields.join(' ')}` : ''}`;
}
