import { CommandResultSchema } from '../protocol/result.js';
import { Topics, type DeviceChannel } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { formatResult, printable, printableJson } from './format.js';

const MAX_MESSAGE_BYTES = 256 * 1024;
const MAX_SUMMARY_CHARS = 400;

/**
 * `fleet watch`: one line per live message (presence, events, results; status with --status) until `until`
 * resolves (Ctrl-C, or the --duration bound). Retained messages are skipped: they are history, not events.
 */
export async function watchFleet(
  connection: FleetConnectionOptions,
  options: { channels: DeviceChannel[]; json: boolean; device?: string },
  until: Promise<void>,
  out: (line: string) => void,
  /** Told once the subscriptions are in place: from then on nothing is missed. */
  onReady: (what: string) => void = () => {},
): Promise<number> {
  const topics = new Topics(connection.topicRoot);
  const client = await connectOperator(connection);
  let count = 0;
  client.on('message', (topic, payload, packet) => {
    const where = topics.parseDeviceTopic(topic);
    if (!where || packet.retain || payload.length > MAX_MESSAGE_BYTES) return;
    count += 1;
    out(options.json ? jsonLine(where.deviceId, where.channel, payload) : textLine(where.deviceId, where.channel, payload));
  });
  try {
    const subscriptions = options.channels.map((c) => (options.device ? topics.device(options.device, c) : topics.allDevices(c)));
    await client.subscribeAsync(subscriptions, { qos: 1 });
    onReady(`watching ${subscriptions.join(', ')}`);
    await until;
    return count;
  } finally {
    await client.endAsync();
  }
}

function jsonLine(deviceId: string, channel: string, payload: Buffer): string {
  try {
    return printableJson(JSON.stringify({ deviceId, channel, payload: JSON.parse(payload.toString('utf8')) }));
  } catch {
    return printableJson(JSON.stringify({ deviceId, channel, invalid: true }));
  }
}

function textLine(deviceId: string, channel: string, payload: Buffer): string {
  const text = payload.toString('utf8');
  if (channel === 'results') {
    try {
      const parsed = CommandResultSchema.safeParse(JSON.parse(text));
      if (parsed.success) return `results   ${formatResult(parsed.data)}`;
    } catch {
      // fall through to the raw line
    }
  }
  const summary = text.length > MAX_SUMMARY_CHARS ? `${text.slice(0, MAX_SUMMARY_CHARS)}...` : text;
  return printable(`${channel.padEnd(9)} ${new Date().toISOString()}  ${deviceId}  ${summary.replace(/\s+/g, ' ')}`);
}
