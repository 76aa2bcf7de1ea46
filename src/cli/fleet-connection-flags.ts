import { Option, type Command } from 'commander';
import { UsageError } from '../lib/errors.js';
import { isTlsBrokerUrl } from '../protocol/broker-url.js';
import type { FleetConnectionOptions } from '../fleet/connection.js';
import type { OperatorProfile } from '../fleet/operator-profile.js';

/** The operator profile and where it was read from, for the messages that name it. */
export interface LoadedProfile {
  path: string | undefined;
  profile: OperatorProfile;
}

export function withConnection(command: Command): Command {
  return command
    .addOption(new Option('--broker <url>', 'broker URL, mqtts://HOST:8883 (default: the operator profile)').env('FLEET_BROKER_URL'))
    .addOption(new Option('--topic-root <root>', 'topic prefix (default: the profile, else fleetlet/v1)').env('FLEET_TOPIC_ROOT'))
    .addOption(new Option('--username <name>', 'MQTT user name').env('FLEET_USERNAME'))
    .addOption(new Option('--password-file <file>', 'file holding the MQTT password').env('FLEET_PASSWORD_FILE'))
    .addOption(new Option('--ca-file <file>', 'CA that signed the broker certificate').env('FLEET_CA_FILE'))
    .addOption(new Option('--cert-file <file>', 'client certificate (mutual TLS)').env('FLEET_CERT_FILE'))
    .addOption(new Option('--tls-key-file <file>', 'client certificate key').env('FLEET_TLS_KEY_FILE'));
}

/** For the tools that send signed commands: they refuse an unencrypted broker unless told otherwise. */
export function withPlaintextOptIn(command: Command): Command {
  return command.option('--allow-plaintext', 'allow a plain mqtt:// broker URL (commands and results then cross the network unencrypted)');
}

export function withSigning(command: Command): Command {
  return command
    .addOption(new Option('--key <file>', 'operator private key, mode 0600 (default: the profile\'s signingKey)').env('FLEET_SIGNING_KEY'))
    .addOption(new Option('--key-id <id>', 'key id (default: key file name without .key)').env('FLEET_KEY_ID'));
}

/** Flags and FLEET_* variables first, then the operator profile: what the operator typed wins. */
export function connectionOf(command: Command, loaded: LoadedProfile): FleetConnectionOptions {
  const o = command.opts<{
    broker?: string;
    topicRoot?: string;
    username?: string;
    passwordFile?: string;
    caFile?: string;
    certFile?: string;
    tlsKeyFile?: string;
  }>();
  const p = loaded.profile;
  const broker = o.broker ?? p.broker;
  if (!broker) {
    throw new UsageError(`no broker: give --broker mqtts://HOST:8883, set FLEET_BROKER_URL, or write broker: in ${loaded.path ?? 'the operator profile'}`);
  }
  const fromProfile = (flagValue: string | undefined, key: string) => (flagValue === undefined ? `${key} in ${loaded.path}` : undefined);
  const origin: FleetConnectionOptions['origin'] = {};
  const named = { broker: fromProfile(o.broker, 'broker'), caFile: fromProfile(o.caFile, 'caFile'), certFile: fromProfile(o.certFile, 'certFile'), keyFile: fromProfile(o.tlsKeyFile, 'keyFile') };
  for (const [key, value] of Object.entries(named)) if (value) origin[key as keyof typeof named] = value;
  const username = o.username ?? p.username;
  const passwordFile = o.passwordFile ?? p.passwordFile;
  const caFile = o.caFile ?? p.caFile;
  const certFile = o.certFile ?? p.certFile;
  const keyFile = o.tlsKeyFile ?? p.keyFile;
  return {
    broker,
    topicRoot: o.topicRoot ?? p.topicRoot ?? 'fleetlet/v1',
    origin,
    ...(username ? { username } : {}),
    ...(passwordFile ? { passwordFile } : {}),
    ...(caFile ? { caFile } : {}),
    ...(certFile ? { certFile } : {}),
    ...(keyFile ? { keyFile } : {}),
  };
}

/**
 * The connection of a command-sending tool. Signatures stop forgery, not reading: over plain mqtt:// anyone on
 * the path reads every command and result and the operator's MQTT password, so it takes an explicit opt-in.
 */
export function encryptedConnectionOf(command: Command, loaded: LoadedProfile): FleetConnectionOptions {
  const connection = connectionOf(command, loaded);
  const allowPlaintext = command.opts<{ allowPlaintext?: boolean }>().allowPlaintext === true;
  if (!isTlsBrokerUrl(connection.broker) && !allowPlaintext) {
    throw new UsageError(`${connection.broker} is not encrypted: use an mqtts:// broker URL, or give --allow-plaintext to send over it anyway`);
  }
  return connection;
}

/** The signing key file and id from --key/--key-id (or FLEET_SIGNING_KEY) or the profile. */
export function signingKeyOf(options: { key?: string; keyId?: string }, loaded: LoadedProfile): { key: string; keyId?: string } {
  const key = options.key ?? loaded.profile.signingKey;
  if (!key) throw new UsageError(`no signing key: give --key FILE, set FLEET_SIGNING_KEY, or write signingKey: in ${loaded.path ?? 'the operator profile'}`);
  const keyId = options.keyId ?? (options.key === undefined ? loaded.profile.keyId : undefined);
  return { key, ...(keyId ? { keyId } : {}) };
}
