// The sandbox's operator: a key the sandbox device trusts, a signed command now and then, and now and then a broker
// outage, so that `npm start` shows the whole loop: commands and their results, and reports queued while the
// broker is away and drained when it is back.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { generateSigningKey } from '../src/fleet/keygen.js';
import { buildSignedCommand, loadSigningKey } from '../src/fleet/signer.js';
import { publicKeyToBase64 } from '../src/protocol/ed25519-keys.js';
import type { Topics } from '../src/protocol/topics.js';

export const OPERATOR_KEY_ID = 'sandbox-operator';

/** The sandbox operator's key file (made once, mode 0600) and the public key the device's config trusts. */
export function sandboxOperatorKey(devDir: string): { file: string; trusted: { id: string; publicKey: string } } {
  const dir = join(devDir, 'operator');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${OPERATOR_KEY_ID}.key`);
  if (!existsSync(file)) generateSigningKey(file, OPERATOR_KEY_ID);
  const publicKey = publicKeyToBase64(createPublicKey(createPrivateKey(readFileSync(file))));
  return { file, trusted: { id: OPERATOR_KEY_ID, publicKey } };
}

/** Signs a ping to the device, as `fleetlet fleet send ping` does, and publishes it on the device's command topic. */
export async function sendPing(client: MqttClient, topics: Topics, deviceId: string, keyFile: string): Promise<string> {
  const envelope = buildSignedCommand({ type: 'ping', target: { device: deviceId }, args: {}, ttlSeconds: 300 }, loadSigningKey(keyFile));
  await client.publishAsync(topics.device(deviceId, 'commands'), JSON.stringify(envelope), { qos: 1 });
  return envelope.id;
}

/** How often things happen; the tests shorten them with FLEETLET_SANDBOX_PACE="commandMs,outageAfterMs,outageMs". */
export interface SandboxPace {
  commandEveryMs: number;
  outageAfterMs: number;
  outageMs: number;
}

export function sandboxPace(env: Record<string, string | undefined>): SandboxPace {
  const [commandEveryMs, outageAfterMs, outageMs] = (env.FLEETLET_SANDBOX_PACE ?? '').split(',').map(Number);
  return {
    commandEveryMs: commandEveryMs || 30_000,
    outageAfterMs: outageAfterMs || 45_000,
    outageMs: outageMs || 15_000,
  };
}
