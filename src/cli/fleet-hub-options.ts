import { Option, type Command } from 'commander';
import { UsageError } from '../lib/errors.js';
import type { HubConnectionOptions } from '../fleet/hub-client.js';
import type { LoadedProfile } from './fleet-connection-flags.js';

/** `--hub URL` and its token: `fleet devices` and `fleet watch` then read the hub instead of the broker. */
export function withHub(command: Command): Command {
  return command
    .addOption(new Option('--hub <url>', "the hub's URL (https://hub.example.net): read it instead of the broker").env('FLEET_HUB_URL'))
    .addOption(new Option('--token-file <file>', 'file holding a hub API token (fleetlet hub token create)').env('FLEET_HUB_TOKEN_FILE'))
    .option('--hub-ca-file <file>', "CA that signed the hub's certificate");
}

/** The hub to read from: --hub (or FLEET_HUB_URL), else the profile's `hub:`; undefined means the broker. */
export function hubOf(command: Command, loaded: LoadedProfile): HubConnectionOptions | undefined {
  const o = command.opts<{ hub?: string; tokenFile?: string; hubCaFile?: string; broker?: string }>();
  const url = o.hub ?? (o.broker ? undefined : loaded.profile.hub?.url);
  if (!url) {
    if (!o.broker && !loaded.profile.broker) throw new UsageError('give --broker URL (or FLEET_BROKER_URL), or --hub URL with --token-file');
    return undefined;
  }
  const tokenFile = o.tokenFile ?? loaded.profile.hub?.tokenFile;
  if (!tokenFile) throw new UsageError('--hub needs --token-file (or FLEET_HUB_TOKEN_FILE, or hub.tokenFile in the operator profile) with an API token');
  return { url, tokenFile, ...(o.hubCaFile ? { caFile: o.hubCaFile } : {}) };
}
