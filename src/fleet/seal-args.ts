import { UsageError } from '../lib/errors.js';
import { secretArgsOf, type CommandType } from '../protocol/command.js';
import { InventorySchema } from '../protocol/inventory.js';
import { parseStrictJson } from '../protocol/strict-json.js';
import { sealPublicKeyFromBase64, sealSecret, type SealedSecret } from '../protocol/sealed-secret.js';
import { Topics } from '../protocol/topics.js';
import { connectOperator, type FleetConnectionOptions } from './connection.js';
import { SealKeyUnavailableError } from './errors.js';

/**
 * The operator's side of sealed secret arguments: the device's seal key comes from its retained inventory (only the
 * device itself may write that topic, by the broker's ACL), and each secret is sealed to it, bound to the command.
 */
export async function fetchSealKey(connection: FleetConnectionOptions, deviceId: string, timeoutMs = 5000): Promise<string> {
  const topic = new Topics(connection.topicRoot).device(deviceId, 'inventory');
  const client = await connectOperator(connection);
  try {
    const payload = await new Promise<Buffer | undefined>((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      client.on('message', (from, message) => {
        if (from !== topic) return;
        clearTimeout(timer);
        resolve(message);
      });
      client.subscribeAsync(topic, { qos: 1 }).catch((err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
    if (!payload) throw new SealKeyUnavailableError(`no inventory of ${deviceId} within ${timeoutMs / 1000} s: has it ever connected?`);
    const strict = parseStrictJson(payload);
    const inventory = strict.ok ? InventorySchema.safeParse(strict.value) : undefined;
    if (!inventory?.success || inventory.data.deviceId !== deviceId) throw new SealKeyUnavailableError(`the inventory of ${deviceId} is not valid`);
    if (!inventory.data.sealKey) throw new SealKeyUnavailableError(`${deviceId} publishes no seal key (a fleetlet too old for sealed secrets?)`);
    return inventory.data.sealKey;
  } finally {
    await client.endAsync();
  }
}

/** Seals each secret to the device's key for this command; a name that is not a secret argument of `type` is refused. */
export function sealSecretArgs(
  secrets: Record<string, string>,
  command: { id: string; type: CommandType; deviceId: string },
  sealKey: string,
): Record<string, SealedSecret> {
  const allowed = secretArgsOf(command.type);
  const recipient = sealPublicKeyFromBase64(sealKey);
  return Object.fromEntries(
    Object.entries(secrets).map(([arg, plaintext]) => {
      if (!allowed.includes(arg)) {
        throw new UsageError(`${arg} is not a secret argument of ${command.type} (secret: ${allowed.join(', ') || 'none'})`);
      }
      return [arg, sealSecret(plaintext, recipient, { commandId: command.id, type: command.type, arg, deviceId: command.deviceId })];
    }),
  );
}
