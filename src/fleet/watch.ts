import type { MqttClient } from 'mqtt';
import { CommandResultSchema } from '../protocol/result.js';
import { Topics, type DeviceChannel } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { formatResult, printable, printableJson } from './format.js';

const MAX_MESSAGE_BYTES = 256 * 1024;
const MAX_SUMMARY_CHARS = 400;

/** Pause between attempts to reach the broker again after the watch lost it. */
const RECONNECT_DELAY_MS = 2_000;

/**
 * `fleet watch`: one line per live message (presence, events, results; status with --status) until `until`
 * resolves (Ctrl-C, or the --duration bound). Retained messages are skipped: they are history, not events.
 * A lost connection (a broker restart) is said on `notice` and the watch connects again until stopped; only the
 * first connection failing ends it with an error.
 */
export async function watchFleet(
  connection: FleetConnectionOptions,
  options: { channels: DeviceChannel[]; json: boolean; device?: string },
  until: Promise<void>,
  out: (line: string) => void,
  /** Told once the subscriptions are in place (from then on nothing is missed), and of every lost connection. */
  notice: (what: string) => void = () => {},
): Promise<number> {
  const topics = new Topics(connection.topicRoot);
  const subscriptions = options.channels.map((c) => (options.device ? topics.device(options.device, c) : topics.allDevices(c)));
  const stopped = until.then(() => 'stopped' as const);
  let count = 0;
  for (let attempt = 0; ; attempt += 1) {
    let client: MqttClient;
    try {
      client = await connectOperator(connection);
    } catch (err) {
      if (attempt === 0) throw err;
      notice(`${err instanceof Error ? err.message : String(err)}; trying again in ${RECONNECT_DELAY_MS / 1000} s`);
      if ((await Promise.race([stopped, delay(RECONNECT_DELAY_MS)])) === 'stopped') return count;
      continue;
    }
    const lost = new Promise<'lost'>((resolve) => client.once('close', () => resolve('lost')));
    client.on('message', (topic, payload, packet) => {
      const where = topics.parseDeviceTopic(topic);
      if (!where || packet.retain || payload.length > MAX_MESSAGE_BYTES) return;
      count += 1;
      out(options.json ? jsonLine(where.deviceId, where.channel, payload) : textLine(where.deviceId, where.channel, payload));
    });
    try {
      try {
        await client.subscribeAsync(subscriptions, { qos: 1 });
      } catch (err) {
        if (attempt === 0) throw err;
        notice(`lost the connection to ${connection.broker} while subscribing; reconnecting`);
        continue;
      }
      const watching = `watching ${subscriptions.join(', ')}`;
      notice(attempt === 0 ? watching : `reconnected to ${connection.broker}: messages sent while the watch was away are missed; ${watching}`);
      if ((await Promise.race([stopped, lost])) === 'stopped') return count;
      notice(`lost the connection to ${connection.broker}; reconnecting`);
    } finally {
      await client.endAsync(true);
    }
  }
}

function delay(ms: number): Promise<'waited'> {
  return new Promise((resolve) => setTimeout(() => resolve('waited'), ms));
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
