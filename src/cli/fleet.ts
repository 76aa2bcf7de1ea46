import { Option, type Command } from 'commander';
import { FleetletError, UsageError } from '../lib/errors.js';
import { COMMAND_TYPES, SECRET_ARGS, secretArgsOf, type CommandTarget, type CommandType } from '../protocol/command.js';
import type { DeviceChannel } from '../protocol/topics.js';
import { listDevices } from '../fleet/devices.js';
import { forgetDevices } from '../fleet/forget.js';
import { generateSigningKey, trustSnippet } from '../fleet/keygen.js';
import { groupAclLines, readGroupMembership } from '../fleet/group-acl.js';
import { readOperatorFile } from '../fleet/operator-files.js';
import { fetchSealKey, sealSecretArgs } from '../fleet/seal-args.js';
import { buildSignedCommand, loadSigningKey, newCommandId } from '../fleet/signer.js';
import { sendSigned } from '../fleet/send.js';
import { watchFleet } from '../fleet/watch.js';
import { listAlertsFromHub, listDevicesFromHub, watchHub } from '../fleet/hub-views.js';
import { ALERT_RULES, ALERTS_MAX_LIMIT, type AlertRule } from '../protocol/hub-alerts-api.js';
import { hubOf, withHub } from './fleet-hub-options.js';
import { parseAmount } from '../fleet/rollout-plan.js';
import { runRollout } from '../fleet/rollout.js';
import type { CliIo } from './program.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { registerTrustCommands } from './fleet-trust.js';
import { labelsOf, positive, rolloutPlan } from './fleet-rollout-flags.js';
import { runHubRollout, wantsHub, type HubRolloutFlags } from './fleet-hub-rollout.js';
import { connectionOf, encryptedConnectionOf, signingKeyOf, withConnection, withPlaintextOptIn, withSigning, type LoadedProfile } from './fleet-connection-flags.js';
import { loadOperatorProfile, operatorProfilePath } from '../fleet/operator-profile.js';
import { OperatorProfileError } from '../fleet/errors.js';

/** sysexits EX_TEMPFAIL: the command went out but no answer came in time; trying again later may help. */
export const EXIT_NO_ANSWER = 75;

const collect = (value: string, previous: string[]) => [...previous, value];

/** `fleetlet fleet ...`: the operator side. Environment defaults use FLEET_* names (not FLEETLET_*, the agent's config). */
export function registerFleetCommands(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  let loaded: LoadedProfile | undefined;
  /** Read on first use: `fleet keygen` and `fleet acl` need no profile, and a broken one must not stop them. */
  const profile = (): LoadedProfile => {
    if (!loaded) {
      const path = operatorProfilePath(io.env);
      loaded = { path, profile: loadOperatorProfile(path, io.env.FLEET_PROFILE !== undefined) };
    }
    return loaded;
  };
  const fleet = program.command('fleet').description('operator tools: keys, devices, commands, rollouts');

  fleet
    .command('keygen')
    .description('make an Ed25519 signing key pair; the private key file is created with mode 0600')
    .argument('<file>', 'private key file to create (e.g. ops-2026.key)')
    .option('--key-id <id>', 'key id devices will know it by (default: the file name without .key)')
    .action(guarded(io, setExitCode, async (file: string, options: { keyId?: string }) => {
      const keyId = options.keyId ?? file.replace(/^.*\//, '').replace(/\.key$/, '');
      const key = generateSigningKey(file, keyId);
      io.stdout(`wrote private key ${file} (mode 0600); keep it off the devices\n`);
      io.stdout(`public key ${key.publicKey}\nadd to each device's config:\n${trustSnippet(key)}`);
      io.stdout(`or, on a fleet with a trust document: fleetlet fleet trust add-key ${keyId} --public-key ${key.publicKey} --types ... --targets ...\n`);
      setExitCode(EXIT.OK);
    }));

  registerTrustCommands(fleet, io, setExitCode, (action) => guarded(io, setExitCode, action));

  withPlaintextOptIn(withConnection(withSigning(fleet.command('send').description('sign one command, publish it, wait for its result'))))
    .argument('<type>', `command type: ${COMMAND_TYPES.join(', ')}`)
    .option('--device <id>', 'target device')
    .option('--group <name>', 'target group')
    .option('--args <json>', 'arguments as a JSON object')
    .option('--arg <key=value>', 'one argument (repeatable); the value is JSON if it parses, else a string', collect, [])
    .option('--arg-file <key=file>', 'one argument read from a file', collect, [])
    .option('--secret-file <key=file>', `a secret argument (${secretArgNames()}) read from a file and sealed to the target device's key`, collect, [])
    .option('--arg-json <key=file>', 'one argument read from a JSON file (e.g. document=trust.json for trust.update)', collect, [])
    .option('--ttl <seconds>', 'how long the command stays valid', '3600')
    .option('--wait <seconds>', 'how long to wait for results', '60')
    .action(guarded(io, setExitCode, async (type: string, options: SendFlags, command: Command) => {
      if (!(COMMAND_TYPES as string[]).includes(type)) throw new UsageError(`unknown command type "${type}"`);
      const connection = encryptedConnectionOf(command, profile());
      const signing = signingKeyOf(options, profile());
      const signer = loadSigningKey(signing.key, signing.keyId);
      const target = targetOf(options);
      const args = argsOf(options);
      const secrets = secretsOf(options);
      const id = newCommandId();
      for (const name of secretArgsOf(type as CommandType)) {
        if (name in args) throw new UsageError(`${name} is secret: give it with --secret-file ${name}=FILE, which seals it to the device`);
      }
      if (Object.keys(secrets).length > 0) {
        if (!('device' in target)) throw new UsageError('a secret is sealed to one device: send it with --device, once per device');
        const sealKey = await fetchSealKey(connection, target.device);
        Object.assign(args, sealSecretArgs(secrets, { id, type: type as CommandType, deviceId: target.device }, sealKey));
      }
      const envelope = buildSignedCommand({ id, type: type as CommandType, target, args, ttlSeconds: positive(options.ttl, '--ttl') }, signer);
      const sent = await sendSigned(envelope, connection, positive(options.wait, '--wait'), (line) => io.stdout(`${line}\n`));
      if (sent.outcome === 'timeout') io.stderr(`no final result within ${options.wait} s\n`);
      setExitCode(sent.outcome === 'succeeded' ? EXIT.OK : sent.outcome === 'timeout' ? EXIT_NO_ANSWER : EXIT.FAILURE);
    }));

  fleet
    .command('acl')
    .description("print the broker's ACL: each device may read only its own groups' commands (reload mosquitto with SIGHUP after)")
    .requiredOption('--groups <file>', 'group membership, YAML: groups: { <group>: [<device id>, ...] }')
    .option('--base <file>', 'ACL printed first: the shipped per-device rules and the operators')
    .addOption(new Option('--topic-root <root>', 'topic prefix').env('FLEET_TOPIC_ROOT').default('fleetlet/v1'))
    .action(guarded(io, setExitCode, async (options: { groups: string; base?: string; topicRoot: string }) => {
      const base = options.base ? `${readSmallFile(options.base).trimEnd()}\n\n` : '';
      io.stdout(`${base}${groupAclLines(readGroupMembership(options.groups), options.topicRoot).join('\n')}\n`);
      setExitCode(EXIT.OK);
    }));

  withHub(withConnection(fleet.command('devices').description('list devices: from the hub with --hub, else from their retained presence and inventory')))
    .option('--label <key=value>', 'only devices with this label (repeatable)', collect, [])
    .option('--group <name>', 'only devices in this group')
    .option('--online', 'only online devices')
    .option('--json', 'JSON instead of a table')
    .action(guarded(io, setExitCode, async (options: { label: string[]; group?: string; online?: boolean; json?: boolean }, command: Command) => {
      const filter = { labels: labelsOf(options.label), ...(options.group ? { group: options.group } : {}), onlineOnly: options.online === true };
      const hub = hubOf(command, profile());
      if (hub) await listDevicesFromHub(hub, filter, { json: options.json === true }, io.stdout);
      else await listDevices(connectionOf(command, profile()), filter, { json: options.json === true }, io.stdout, io.stderr);
      setExitCode(EXIT.OK);
    }));

  withHub(fleet.command('alerts').description("list the hub's alerts, newest first (open ones unless --state says otherwise)"))
    .addOption(new Option('--state <state>', 'which alerts').choices(['open', 'resolved', 'all']).default('open'))
    .addOption(new Option('--rule <rule>', 'only this rule').choices([...ALERT_RULES]))
    .option('--device <id>', 'only alerts about this device')
    .option('--limit <n>', 'at most this many, newest first (1-500)', '100')
    .option('--json', 'JSON instead of a table')
    .action(guarded(io, setExitCode, async (options: { state: string; rule?: AlertRule; device?: string; limit: string; json?: boolean }, command: Command) => {
      const loaded = profile();
      // Alerts live only in the hub: there is no broker mode to fall back to.
      const hub = command.opts<{ hub?: string }>().hub || loaded.profile.hub?.url ? hubOf(command, loaded) : undefined;
      if (!hub) throw new UsageError('fleet alerts reads the hub: give --hub URL with --token-file (or FLEET_HUB_URL, or hub: in the operator profile)');
      const limit = positive(options.limit, '--limit');
      if (!Number.isInteger(limit) || limit > ALERTS_MAX_LIMIT) {
        throw new UsageError(`--limit expects a whole number from 1 to ${ALERTS_MAX_LIMIT}, got "${options.limit}"`);
      }
      const state = options.state === 'all' ? undefined : (options.state as 'open' | 'resolved');
      const filter = { limit, ...(state ? { state } : {}), ...(options.rule ? { rule: options.rule } : {}), ...(options.device ? { device: options.device } : {}) };
      await listAlertsFromHub(hub, filter, { json: options.json === true }, io.stdout);
      setExitCode(EXIT.OK);
    }));

  withConnection(fleet.command('forget').description("clear a gone device's retained presence and inventory, so that it is no longer listed"))
    .argument('<device...>', 'device ids')
    .option('--force', 'also a device whose presence says online (it publishes both again when it reconnects)')
    .action(guarded(io, setExitCode, async (deviceIds: string[], options: { force?: boolean }, command: Command) => {
      await forgetDevices(connectionOf(command, profile()), deviceIds, { force: options.force === true }, (line) => io.stdout(`${line}\n`));
      setExitCode(EXIT.OK);
    }));

  withHub(withConnection(fleet.command('watch').description("print live presence, events and results as they arrive (with --hub: the hub's stream of changes)")))
    .option('--device <id>', 'only this device')
    .option('--status', 'also status samples')
    .option('--json', 'one JSON object per line')
    .option('--duration <seconds>', 'stop after this long (default: until Ctrl-C)')
    .action(guarded(io, setExitCode, async (options: { device?: string; status?: boolean; json?: boolean; duration?: string }, command: Command) => {
      const hub = hubOf(command, profile());
      if (hub) {
        await watchHub(hub, { json: options.json === true, ...(options.device ? { device: options.device } : {}) }, stopSignal(options.duration), (line) => io.stdout(`${line}\n`), (what) => io.stderr(`${what}\n`));
        return setExitCode(EXIT.OK);
      }
      const channels: DeviceChannel[] = ['presence', 'events', 'results', ...(options.status ? (['status'] as const) : [])];
      await watchFleet(
        connectionOf(command, profile()),
        { channels, json: options.json === true, ...(options.device ? { device: options.device } : {}) },
        stopSignal(options.duration),
        (line) => io.stdout(`${line}\n`),
        // On stderr, so that the stream on stdout stays pure (JSON lines with --json).
        (what) => io.stderr(`${what}\n`),
      );
      setExitCode(EXIT.OK);
    }));

  withHub(withPlaintextOptIn(withConnection(withSigning(fleet.command('rollout').description('roll a k3s or agent upgrade out: canaries, batches, halt on failures; with --hub the hub runs it')))))
    .argument('<what>', 'k3s or agent; with --hub also configure, or status, pause, resume or abort a rollout the hub runs')
    .argument('[id]', 'the rollout id, for pause, resume and abort; status without one lists every rollout')
    .option('--state <file>', 'rollout state file; rerun with the same file to resume (not needed with --dry-run)')
    .option('--to <version>', 'target version (e.g. v1.36.3+k3s1 for k3s, 1.2.3 for agent)')
    .option('--sha256 <hex>', 'sha256 of the artifact')
    .option('--artifact-url <url>', 'where devices download the artifact')
    .option('--allow-downgrade', 'allow a k3s downgrade')
    .option('--release-signature <json>', 'agent: what `fleet release sign` printed (needed once the trust document names release keys)')
    .option('--label <key=value>', 'only devices with this label (repeatable)', collect, [])
    .option('--group <name>', 'only devices in this group')
    .option('--include-offline', 'also devices whose presence is offline (they will likely time out)')
    .option('--canary <ids>', 'comma-separated devices to upgrade first')
    .option('--canary-count <n>', 'without --canary: how many devices go first', '1')
    .option('--batch-size <n|p%>', 'devices per batch after the canaries', '10%')
    .option('--max-failures <n|p%>', 'halt when more devices than this have failed', '0')
    .option('--device-timeout <seconds>', 'how long one device may take', '900')
    .option('--ttl <seconds>', 'how long each command stays valid', '86400')
    .option('--dry-run', 'show the devices and batches, send nothing')
    .option('--abort', 'end the rollout in --state: nothing more is sent')
    .option('--watch <seconds>', 'with --hub: a device that goes offline, crash-loops or reports k3s unhealthy this long after its success counts as failed', '300')
    .option('--args <json>', 'configure: the k3s.configure arguments (labels, taints, serverUrl) as a JSON object')
    .option('--json', 'status: the whole rollout as JSON')
    .action(guarded(io, setExitCode, async (what: string, id: string | undefined, options: HubRolloutFlags, command: Command) => {
      if (wantsHub(what, options)) return setExitCode(await runHubRollout(what, id, options, command, profile(), io));
      if (what !== 'k3s' && what !== 'agent') throw new UsageError('rollout what? expected k3s or agent (configure, status, pause, resume and abort need --hub)');
      if (id) throw new UsageError(`unexpected argument "${id}"`);
      const connection = encryptedConnectionOf(command, profile());
      const signing = signingKeyOf(options, profile());
      const signer = loadSigningKey(signing.key, signing.keyId);
      // A --max-failures typed now (not its default) is the new threshold for a halted rollout.
      const newMaxFailures = command.getOptionValueSource('maxFailures') === 'cli' ? parseAmount(options.maxFailures, '--max-failures') : undefined;
      const state = await runRollout({
        kind: what === 'k3s' ? 'k3s.upgrade' : 'agent.upgrade',
        ...(options.state ? { stateFile: options.state } : {}),
        ...(options.to ? { plan: rolloutPlan(what, options) } : {}),
        ...(newMaxFailures ? { newMaxFailures } : {}),
        abort: options.abort === true,
        connection,
        signer,
        out: (line) => io.stdout(`${line}\n`),
        dryRun: options.dryRun === true,
      });
      setExitCode(state.outcome === 'halted' ? EXIT.FAILURE : EXIT.OK);
    }));
}

/** Maps the errors an operator can fix to a message and an exit code instead of a stack trace. */
export function guarded<A extends unknown[]>(
  io: CliIo,
  setExitCode: (code: number) => void,
  action: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      if (!(err instanceof FleetletError)) throw err;
      io.stderr(`fleetlet: ${err.message}\n`);
      setExitCode(err instanceof OperatorProfileError ? EXIT.CONFIG : exitCodeFor(err));
    }
  };
}

interface SendFlags {
  key?: string;
  keyId?: string;
  device?: string;
  group?: string;
  args?: string;
  arg: string[];
  argFile: string[];
  secretFile: string[];
  argJson: string[];
  ttl: string;
  wait: string;
}

function targetOf(options: SendFlags): CommandTarget {
  if (options.device && options.group) throw new UsageError('give --device or --group, not both');
  if (options.device) return { device: options.device };
  if (options.group) return { group: options.group };
  throw new UsageError('give a target: --device <id> or --group <name>');
}

/** Secret arguments on the command line would stay in ps output and shell history: only --arg-file may carry them. */
function argsOf(options: SendFlags): Record<string, unknown> {
  let args: Record<string, unknown> = {};
  if (options.args) {
    try {
      args = JSON.parse(options.args) as Record<string, unknown>;
    } catch {
      throw new UsageError('--args is not valid JSON');
    }
    if (args === null || typeof args !== 'object' || Array.isArray(args)) throw new UsageError('--args must be a JSON object');
  }
  for (const pair of options.arg) {
    const [key, ...rest] = pair.split('=');
    if (!key || rest.length === 0) throw new UsageError(`--arg expects key=value, got "${pair}"`);
    const raw = rest.join('=');
    try {
      args[key] = JSON.parse(raw) as unknown;
    } catch {
      args[key] = raw;
    }
  }
  for (const pair of options.argFile) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--arg-file expects key=file, got "${pair}"`);
    args[pair.slice(0, at)] = readSmallFile(pair.slice(at + 1));
  }
  for (const pair of options.argJson) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--arg-json expects key=file, got "${pair}"`);
    try {
      args[pair.slice(0, at)] = JSON.parse(readSmallFile(pair.slice(at + 1))) as unknown;
    } catch (err) {
      if (err instanceof UsageError) throw err;
      throw new UsageError(`${pair.slice(at + 1)} is not valid JSON`);
    }
  }
  return args;
}

function secretsOf(options: SendFlags): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const pair of options.secretFile) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--secret-file expects key=file, got "${pair}"`);
    secrets[pair.slice(0, at)] = readSmallFile(pair.slice(at + 1));
  }
  return secrets;
}

function secretArgNames(): string {
  return Object.entries(SECRET_ARGS)
    .map(([type, names]) => `${type}: ${(names ?? []).join(', ')}`)
    .join('; ');
}

const MAX_ARG_FILE_BYTES = 64 * 1024;

function readSmallFile(file: string): string {
  return readOperatorFile(file, MAX_ARG_FILE_BYTES).trim();
}

/** Resolves on Ctrl-C / SIGTERM, or after `duration` seconds when given. */
function stopSignal(duration: string | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      clearTimeout(timer);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    const timer = duration ? setTimeout(done, positive(duration, '--duration') * 1000) : undefined;
  });
}
