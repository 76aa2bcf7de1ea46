import type { MqttClient } from 'mqtt';
import { CommandResultSchema, FINAL_STATUSES, type CommandResult } from '../protocol/result.js';
import type { Topics } from '../protocol/topics.js';

const MAX_RESULT_BYTES = 256 * 1024;

/**
 * Listens to every device's results topic and hands on those for the command ids the caller watches. Results are
 * parsed with the wire schema; anything else is ignored (a device cannot confuse the operator's tools).
 */
export class ResultListener {
  private readonly watchers = new Map<string, (result: CommandResult) => void>();
  private readonly onMessage = (topic: string, payload: Buffer) => {
    const where = this.topics.parseDeviceTopic(topic);
    if (where?.channel !== 'results' || payload.length > MAX_RESULT_BYTES) return;
    let parsed;
    try {
      parsed = CommandResultSchema.safeParse(JSON.parse(payload.toString('utf8')));
    } catch {
      return;
    }
    // A result must come from the device it names: the topic is what the broker's ACL vouches for.
    if (!parsed.success || parsed.data.deviceId !== where.deviceId || parsed.data.commandId === null) return;
    this.watchers.get(parsed.data.commandId)?.(parsed.data);
  };

  constructor(
    private readonly client: MqttClient,
    private readonly topics: Topics,
  ) {}

  async start(): Promise<void> {
    this.client.on('message', this.onMessage);
    await this.client.subscribeAsync(this.topics.allDevices('results'), { qos: 1 });
  }

  stop(): void {
    this.client.off('message', this.onMessage);
  }

  watch(commandId: string, onResult: (result: CommandResult) => void): () => void {
    this.watchers.set(commandId, onResult);
    return () => this.watchers.delete(commandId);
  }

  /**
   * Resolves with the final result of one device's command (succeeded, failed or rejected), passing progress on
   * as it comes, or with undefined when none arrived within timeoutMs.
   */
  finalResult(commandId: string, deviceId: string, timeoutMs: number, onProgress?: (r: CommandResult) => void): Promise<CommandResult | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        unwatch();
        resolve(undefined);
      }, timeoutMs);
      const unwatch = this.watch(commandId, (result) => {
        if (result.deviceId !== deviceId) return;
        // A replay refusal after acceptance is a duplicate delivery, not the outcome.
        const duplicate = result.status === 'rejected' && result.reason === 'replayed';
        if (FINAL_STATUSES.includes(result.status) && !duplicate) {
          clearTimeout(timer);
          unwatch();
          resolve(result);
        } else {
          onProgress?.(result);
        }
      });
    });
  }
}
