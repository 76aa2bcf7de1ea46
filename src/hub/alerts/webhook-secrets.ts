import { readFileSync, statSync } from 'node:fs';
import type { AlertWebhookConfig } from '../../config/hub-alerts-schema.js';
import { errorReason } from '../../lib/errors.js';
import { AlertWebhookSecretError } from './errors.js';

/** An HMAC key fits in a line; a larger file is the wrong file. */
const MAX_SECRET_BYTES = 4096;

export interface WebhookTarget {
  name: string;
  url: string;
  /** The HMAC-SHA256 key; never logged. */
  key: Buffer;
}

/**
 * Reads each webhook's key at start, so a wrong file stops the hub at once instead of failing every delivery later.
 * The file must be private (0600 or stricter): anyone who can read it can forge alerts to the receiver.
 */
export function loadWebhookTargets(webhooks: readonly AlertWebhookConfig[]): Map<string, WebhookTarget> {
  const targets = new Map<string, WebhookTarget>();
  for (const webhook of webhooks) {
    const where = `hub.alerts.webhooks "${webhook.name}": secretFile ${webhook.secretFile}`;
    if (targets.has(webhook.name)) throw new AlertWebhookSecretError(`hub.alerts.webhooks: the name "${webhook.name}" is used twice`);
    let key: Buffer;
    try {
      const stat = statSync(webhook.secretFile);
      if (!stat.isFile()) throw new AlertWebhookSecretError(`${where} is not a regular file`);
      if (stat.mode & 0o077) {
        throw new AlertWebhookSecretError(`${where} is readable by group or others (mode ${(stat.mode & 0o777).toString(8)}); run: chmod 600 ${webhook.secretFile}`);
      }
      if (stat.size > MAX_SECRET_BYTES) throw new AlertWebhookSecretError(`${where} is larger than ${MAX_SECRET_BYTES} bytes`);
      key = Buffer.from(readFileSync(webhook.secretFile, 'utf8').trim(), 'utf8');
    } catch (err) {
      if (err instanceof AlertWebhookSecretError) throw err;
      throw new AlertWebhookSecretError(`${where} cannot be read: ${errorReason(err)}`, { cause: err });
    }
    if (key.length === 0) throw new AlertWebhookSecretError(`${where} is empty`);
    targets.set(webhook.name, { name: webhook.name, url: webhook.url, key });
  }
  return targets;
}
