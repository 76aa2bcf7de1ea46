import { Command, CommanderError, Option } from 'commander';
import { FLEETLET_VERSION } from '../lib/version.js';
import { LOG_LEVELS } from '../lib/logger.js';
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import { EXIT } from './exit-codes.js';
import type { K3sCliAction } from './k3s.js';
import type { HubCliAction } from './hub.js';

export interface ConfigSelection {
  path: string;
  explicit: boolean;
  sets: string[];
}

/** What each command does; the composition root supplies them, the CLI only parses and dispatches. */
export interface CommandHandlers {
  agent(selection: ConfigSelection): Promise<number>;
  configCheck(selection: ConfigSelection): Promise<number>;
  configSchema(): Promise<number>;
  doctor(selection: ConfigSelection, options: { root: string; json: boolean }): Promise<number>;
  provision(options: ProvisionCliOptions): Promise<number>;
  uninstall(selection: ConfigSelection, options: { root: string; purge: boolean; removeNodeIdentity: boolean }): Promise<number>;
  status(selection: ConfigSelection, options: { json: boolean }): Promise<number>;
  k3s(selection: ConfigSelection, action: K3sCliAction): Promise<number>;
  hub(selection: ConfigSelection, action: HubCliAction): Promise<number>;
}

export interface ProvisionCliOptions {
  root: string;
  binary?: string;
  arch?: string;
  config?: string;
  trustAnchor: string[];
  file: string[];
  tokenFile?: string;
  /** Zero-touch enrolment: the fleet's bootstrap token, the hub and the fleet CA, all three or none. */
  enrolTokenFile?: string;
  hub?: string;
  caFile?: string;
  airgap?: string;
  enable: boolean;
  allowIdentity: boolean;
  allowMissing: boolean;
  dryRun: boolean;
  verify: boolean;
}

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** Adds a group of commands (e.g. `fleet ...`) to the program; the command table loads such groups on demand. */
export type CommandRegistrar = (program: Command, io: CliIo, setExitCode: (code: number) => void) => void;

export function buildProgram(
  handlers: CommandHandlers,
  io: CliIo,
  setExitCode: (code: number) => void,
  groups: CommandRegistrar[] = [],
): Command {
  const program = new Command('fleetlet')
    .description('On-device agent for k3s edge fleets')
    .version(FLEETLET_VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .showSuggestionAfterError(true)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride();

  const configOptions = (command: Command) =>
    command
      .addOption(
        new Option('-c, --config <path>', 'config file').env('FLEETLET_CONFIG').default(DEFAULT_CONFIG_PATH),
      )
      .option('--set <key=value>', 'override a config key (repeatable), e.g. --set log.level=debug', collect, []);

  const selection = (command: Command, pathArg?: string): ConfigSelection => {
    const options = command.opts<{ config: string; set: string[]; logLevel?: string; stateDir?: string }>();
    const sets = [...options.set];
    if (options.logLevel) sets.unshift(`log.level=${options.logLevel}`);
    if (options.stateDir) sets.unshift(`stateDir=${options.stateDir}`);
    const source = command.getOptionValueSource('config');
    return { path: pathArg ?? options.config, explicit: pathArg !== undefined || source !== 'default', sets };
  };

  configOptions(program.command('agent').description('run the agent in the foreground'))
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS))
    .option('--state-dir <dir>', 'state directory')
    .action(async (_options, command: Command) => setExitCode(await handlers.agent(selection(command))));

  configOptions(program.command('doctor').description('check that this device is ready for fleetlet and k3s'))
    .option('--root <dir>', 'inspect the filesystem under this directory (e.g. a mounted image)', '/')
    .option('--json', 'print the results as JSON', false)
    .action(async (options: { root: string; json: boolean }, command: Command) =>
      setExitCode(await handlers.doctor(selection(command), { root: options.root, json: options.json })),
    );

  program
    .command('provision')
    .description('write fleetlet into a root filesystem (a golden image, or / on this device); never a device identity')
    .requiredOption('--root <dir>', 'root of the filesystem to write into')
    .option('--binary <file>', 'the fleetlet binary for the device (default: this binary); it must run --version')
    .option('--arch <arch>', "the image's architecture, x64, arm64 or armv7 (default: from the loader in the image)")
    .option('--config <file>', 'config.yaml for the device (must not set device.id)')
    .option('--trust-anchor <file>', 'a CA certificate or key to install under /etc/fleetlet/trust (repeatable)', collect, [])
    .option('--file <key=file>', 'copy a file the config names to its place, e.g. broker.tls.keyFile=./device.key (repeatable)', collect, [])
    .option('--token-file <file>', 'the k3s join token, copied (0600) to where k3s.tokenFile points')
    .option('--enrol-token-file <file>', "the fleet's bootstrap token, copied (0600) to /etc/fleetlet/enrol-token: devices enrol at first boot")
    .option('--hub <url>', 'the hub that issues device certificates, https:// (with --enrol-token-file)')
    .option('--ca-file <file>', 'the fleet CA (signs the hub and the device certificates), installed under /etc/fleetlet/trust')
    .option('--airgap <path>', 'a k3s release to install as well: a folder or plain tar of binary, sha256sum-<arch>.txt, images')
    .option('--no-enable', 'do not enable the unit')
    .option('--allow-identity', 'the root already is a device (install.sh on the device itself)', false)
    .option('--allow-missing', 'files the config names may be missing from the image (warned about)', false)
    .option('--dry-run', 'check everything and list what would be written, without writing', false)
    .option('--verify', 'check the image against the manifest a provision wrote, and write nothing', false)
    .action(async (options: ProvisionCliOptions) => setExitCode(await handlers.provision(options)));

  configOptions(program.command('uninstall').description('remove fleetlet: unit, binary; stops k3s with one SIGTERM'))
    .option('--root <dir>', 'root of the filesystem to remove fleetlet from', '/')
    .option('--purge', 'also remove the config, the state and k3s (binary and data dir)', false)
    .option('--remove-node-identity', 'also remove /etc/rancher/node (the server then rejects this node)', false)
    .action(async (options: { root: string; purge: boolean; removeNodeIdentity: boolean }, command: Command) =>
      setExitCode(await handlers.uninstall(selection(command), options)),
    );

  configOptions(program.command('status').description('show the device at a glance (from the running agent or its database)'))
    .option('--json', 'print the status and inventory as JSON', false)
    .action(async (options: { json: boolean }, command: Command) =>
      setExitCode(await handlers.status(selection(command), { json: options.json })),
    );

  const k3s = program.command('k3s').description('the k3s agent on this device: status, install, logs, stop, start');
  configOptions(k3s.command('status').description('what the supervisor knows: state, pid, restarts, the last problem and its fix'))
    .option('--json', 'print as JSON', false)
    .action(async (options: { json: boolean }, command: Command) =>
      setExitCode(await handlers.k3s(selection(command), { kind: 'status', json: options.json })),
    );
  configOptions(k3s.command('install').description('download, verify and install k3s (or from an air-gap folder)'))
    .option('--release <version>', 'k3s version, e.g. v1.36.3+k3s1 (default: k3s.version, else the channel)')
    .option('--from <path>', 'air-gap folder or .tar bundle: the binary, sha256sum-<arch>.txt and optionally the images archive')
    .action(async (options: { release?: string; from?: string }, command: Command) =>
      setExitCode(await handlers.k3s(selection(command), { kind: 'install', version: options.release, from: options.from })),
    );
  configOptions(k3s.command('stop').description('stop k3s (one SIGTERM) and keep it stopped, across fleetlet restarts and reboots'))
    .action(async (_options, command: Command) => setExitCode(await handlers.k3s(selection(command), { kind: 'stop' })));
  configOptions(k3s.command('start').description('let k3s run again after `fleetlet k3s stop`'))
    .action(async (_options, command: Command) => setExitCode(await handlers.k3s(selection(command), { kind: 'start' })));
  configOptions(k3s.command('logs').description("print the newest lines of k3s's own log"))
    .option('-n, --lines <count>', 'how many lines', '100')
    .action(async (options: { lines: string }, command: Command) =>
      setExitCode(await handlers.k3s(selection(command), { kind: 'logs', lines: Number(options.lines) || 100 })),
    );

  const config = program.command('config').description('check and describe the configuration');
  configOptions(config.command('check').description('validate a config and print every problem'))
    .argument('[path]', 'config file (default: --config)')
    .action(async (path: string | undefined, _options, command: Command) =>
      setExitCode(await handlers.configCheck(selection(command, path))),
    );
  config
    .command('schema')
    .description('print the JSON Schema of the config file')
    .action(async () => setExitCode(await handlers.configSchema()));

  const hub = program.command('hub').description('the cloud side: keep everything the fleet sends (ingest into SQLite or PostgreSQL)');
  configOptions(hub.command('run', { isDefault: true }).description('run one hub replica in the foreground (`fleetlet hub` alone does this)'))
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS))
    .action(async (_options, command: Command) => setExitCode(await handlers.hub(selection(command), { kind: 'run' })));
  configOptions(hub.command('status').description("the hub's database at a glance: devices, ingest in the last minute, rejects, size"))
    .option('--json', 'print as JSON', false)
    .action(async (options: { json: boolean }, command: Command) =>
      setExitCode(await handlers.hub(selection(command), { kind: 'status', json: options.json })),
    );

  for (const register of groups) register(program, io, setExitCode);

  return program;
}

/** Parses argv and runs the command; maps usage errors to 64 and help/version to 0. */
export async function runCli(program: Command, argv: string[], getExitCode: () => number): Promise<number> {
  try {
    if (argv.length <= 2) {
      program.outputHelp();
      return EXIT.USAGE;
    }
    await program.parseAsync(argv);
    return getExitCode();
  } catch (err) {
    if (err instanceof CommanderError) {
      // 'commander.help' is help shown because a subcommand was missing: a usage error, unlike an asked-for --help.
      return ['commander.helpDisplayed', 'commander.version'].includes(err.code) ? EXIT.OK : EXIT.USAGE;
    }
    throw err;
  }
}
