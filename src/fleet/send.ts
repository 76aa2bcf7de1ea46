import type { MqttClient } from 'mqtt';
import type { CommandEnvelope } from '../protocol/command.js';
import type { CommandResult } from '../protocol/result.js';
import { Topics } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { collectFleet, type DeviceView } from './fleet-view.js';
import { formatResult, printable } from './format.js';
import { ResultListener } from './results.js';

/** Long enough for the retained presence and inventory, which the broker sends at once. */
const FLEET_SETTLE_MS = 300;

export interface SendOutcome {
  /** succeeded: every device that answered succeeded (and, for one device, it answered). */
  outcome: 'succeeded' | 'failed' | 'timeout';
  results: CommandResult[];
}

/**
 * Publishes one signed command and waits for its results: for a device, until its final result or the timeout;
 * for a group, until every member the retained inventories name and presence shows online answered (or the
 * timeout), then sums up. A target the broker knows nothing of, or one that is offline, is said before waiting.
 */
export async function sendSigned(
  envelope: CommandEnvelope,
  connection: FleetConnectionOptions,
  waitSeconds: number,
  out: (line: string) => void,
): Promise<SendOutcome> {
  const topics = new Topics(connection.topicRoot);
  const client = await connectOperator(connection);
  const listener = new ResultListener(client, topics);
  try {
    const fleet = await collectFleet(client, topics, { settleMs: FLEET_SETTLE_MS, maxWaitMs: 5_000 });
    await listener.start();
    const results: CommandResult[] = [];
    const show = (result: CommandResult) => {
      results.push(result);
      out(formatResult(result));
      // logs.collect: the lines themselves, so the operator need not dig them out of JSON.
      const lines = result.status === 'progress' ? result.data?.lines : undefined;
      if (Array.isArray(lines)) for (const line of lines) out(printable(`  ${result.deviceId} | ${String(line)}`));
    };
    if ('device' in envelope.target) {
      const deviceId = envelope.target.device;
      const known = fleet.get(deviceId);
      if (!known) out(`device ${deviceId} is unknown here: no retained presence or inventory under ${topics.root}/devices/${deviceId}; check the id`);
      else if (known.state !== 'online') out(`device ${deviceId} is ${known.state} (last seen ${known.lastSeen ?? 'never'}): it answers once it is back online`);
      const final = listener.finalResult(envelope.id, deviceId, waitSeconds * 1000, show);
      await client.publishAsync(topics.device(deviceId, 'commands'), JSON.stringify(envelope), { qos: 1 });
      out(`sent ${envelope.type} ${envelope.id} to device ${deviceId}`);
      const result = await final;
      if (!result) return { outcome: 'timeout', results };
      show(result);
      return { outcome: result.status === 'succeeded' ? 'succeeded' : 'failed', results };
    }
    return await sendToGroup(envelope, envelope.target.group, [...fleet.values()], { client, topics, listener, waitSeconds, out, show, results });
  } finally {
    listener.stop();
    await client.endAsync();
  }
}

interface GroupSend {
  client: MqttClient;
  topics: Topics;
  listener: ResultListener;
  waitSeconds: number;
  out: (line: string) => void;
  show: (result: CommandResult) => void;
  results: CommandResult[];
}

async function sendToGroup(envelope: CommandEnvelope, group: string, fleet: DeviceView[], send: GroupSend): Promise<SendOutcome> {
  const { out, results } = send;
  const members = fleet.filter((d) => d.groups.includes(group));
  const online = new Set(members.filter((d) => d.state === 'online').map((d) => d.deviceId));
  const offline = members.filter((d) => d.state !== 'online').map((d) => d.deviceId);
  const answered = new Set<string>();
  let allAnswered: () => void = () => {};
  const everyoneAnswered = new Promise<void>((resolve) => (allAnswered = resolve));
  const unwatch = send.listener.watch(envelope.id, (result) => {
    send.show(result);
    if (!isFinal(result)) return;
    answered.add(result.deviceId);
    if (online.size > 0 && [...online].every((id) => answered.has(id))) allAnswered();
  });
  await send.client.publishAsync(send.topics.groupCommands(group), JSON.stringify(envelope), { qos: 1 });
  out(`sent ${envelope.type} ${envelope.id} to group ${group}: ${online.size} member(s) online, ${offline.length} offline${offline.length ? ` (${offline.join(', ')})` : ''}; waiting up to ${send.waitSeconds} s`);
  if (members.length === 0) out(`no device here names group ${group} in its inventory; waiting for any that answers`);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([everyoneAnswered, new Promise((resolve) => (timer = setTimeout(resolve, send.waitSeconds * 1000)))]);
  clearTimeout(timer);
  unwatch();
  const finals = results.filter(isFinal);
  const bad = finals.filter((r) => r.status !== 'succeeded');
  const silent = [...online].filter((id) => !answered.has(id));
  out(`${finals.length} device(s) answered: ${finals.length - bad.length} succeeded, ${bad.length} failed or rejected${silent.length ? `; no answer from ${silent.join(', ')}` : ''}`);
  return { outcome: finals.length === 0 ? 'timeout' : bad.length > 0 ? 'failed' : 'succeeded', results };
}

/** A final answer; a replay refusal after acceptance is a duplicate delivery, not the outcome. */
function isFinal(result: CommandResult): boolean {
  return ['succeeded', 'failed', 'rejected'].includes(result.status) && !(result.status === 'rejected' && result.reason === 'replayed');
}
