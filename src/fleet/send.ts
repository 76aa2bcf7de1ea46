import type { CommandEnvelope } from '../protocol/command.js';
import type { CommandResult } from '../protocol/result.js';
import { Topics } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { formatResult, printable } from './format.js';
import { ResultListener } from './results.js';

export interface SendOutcome {
  /** succeeded: every device that answered succeeded (and, for one device, it answered). */
  outcome: 'succeeded' | 'failed' | 'timeout';
  results: CommandResult[];
}

/**
 * Publishes one signed command and waits for its results: for a device, until its final result or the timeout;
 * for a group, for the whole wait (the operator side cannot know who is in a group), then sums up.
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
    await listener.start();
    const topic = 'device' in envelope.target ? topics.device(envelope.target.device, 'commands') : topics.groupCommands(envelope.target.group);
    const results: CommandResult[] = [];
    const show = (result: CommandResult) => {
      results.push(result);
      out(formatResult(result));
      // logs.collect: the lines themselves, so the operator need not dig them out of JSON.
      const lines = result.status === 'progress' ? result.data?.lines : undefined;
      if (Array.isArray(lines)) for (const line of lines) out(printable(`  ${result.deviceId} | ${String(line)}`));
    };
    if ('device' in envelope.target) {
      const final = listener.finalResult(envelope.id, envelope.target.device, waitSeconds * 1000, show);
      await client.publishAsync(topic, JSON.stringify(envelope), { qos: 1 });
      out(`sent ${envelope.type} ${envelope.id} to device ${envelope.target.device}`);
      const result = await final;
      if (!result) return { outcome: 'timeout', results };
      show(result);
      return { outcome: result.status === 'succeeded' ? 'succeeded' : 'failed', results };
    }
    const unwatch = listener.watch(envelope.id, show);
    await client.publishAsync(topic, JSON.stringify(envelope), { qos: 1 });
    out(`sent ${envelope.type} ${envelope.id} to group ${envelope.target.group}; collecting results for ${waitSeconds} s`);
    await new Promise((resolve) => setTimeout(resolve, waitSeconds * 1000));
    unwatch();
    const finals = results.filter((r) => ['succeeded', 'failed', 'rejected'].includes(r.status));
    const bad = finals.filter((r) => r.status !== 'succeeded' && !(r.status === 'rejected' && r.reason === 'replayed'));
    out(`${finals.length} device(s) answered: ${finals.length - bad.length} succeeded, ${bad.length} failed or rejected`);
    return { outcome: finals.length === 0 ? 'timeout' : bad.length > 0 ? 'failed' : 'succeeded', results };
  } finally {
    listener.stop();
    await client.endAsync();
  }
}
