import { Option, type Command } from 'commander';
import { UsageError } from '../lib/errors.js';
import type { HubConnectionOptions } from '../fleet/hub-client.js';

/** `--hub URL` and its token: `fleet devices` and `fleet watch` then read the hub instead of the broker. */
export function withHub(command: Command): Command {
  return command
    .addOption(new Option('--hub <url>', "the hub's URL (https://hub.example.net): read it instead of the broker").env('FLEET_HUB_URL'))
    .addOption(new Option('--token-file <file>', 'file holding a hub API token (fleetlet hub token create)').env('FLEET_HUB_TOKEN_FILE'))
    .option('--hub-ca-file <file>', "CA that signed the hub's certificate");
}

export function hubOf(command: Command): HubConnectionOptions | undefined {
  const o = command.opts<{ hub?: string; tokenFile?: string; hubCaFile?: string; broker?: string }>();
  if (!o.hub) {
    if (!o.broker) throw new UsageError('give --broker URL (or FLEET_BROKER_URL), or --hub URL with --token-file');
    return undefined;
  }
  if (!o.tokenFile) throw new UsageError('--hub needs --token-file (or FLEET_HUB_TOKEN_FILE) with an API token');
  return { url: o.hub, tokenFile: o.tokenFile, ...(o.hubCaFile ? { caFile: o.hubCaFile } : {}) };
}
