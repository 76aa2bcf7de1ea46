import { ConfigError, errorMessage } from '../lib/errors.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { loadSelectedConfig } from './load-selected-config.js';
import { buildProgram, runCli, type CliIo, type CommandHandlers, type CommandRegistrar, type ConfigSelection } from './program.js';

/** The one command the CLI does not run itself: the composition root builds and runs the agent. */
export type RunAgent = (selection: ConfigSelection) => Promise<number>;

/**
 * What each command of `fleetlet` runs. Every command but the agent loads its code only when it runs: the agent is
 * a long-lived daemon on boards with little memory, and the operator, doctor, provision and status code (with
 * what they import) would otherwise stay in its heap for good.
 */
function commandHandlers(io: CliIo, runAgent: RunAgent): CommandHandlers {
  return {
    agent: runAgent,
    configCheck: async (selection) => {
      const loaded = loadSelectedConfig(selection, io);
      if (!loaded) return EXIT.CONFIG;
      for (const warning of loaded.warnings) io.stderr(`warning: ${warning}\n`);
      const { agentStartProblems } = await import('./config-agent-checks.js');
      const refused = agentStartProblems(loaded.config);
      if (refused.length > 0) {
        io.stderr(`fleetlet: ${new ConfigError(refused).message}\n`);
        return EXIT.CONFIG;
      }
      io.stdout(`configuration ok (${loaded.files.length > 0 ? loaded.files.join(', ') : 'no files; defaults and environment'})\n`);
      return EXIT.OK;
    },
    configSchema: async () => {
      const { configJsonSchema } = await import('../config/json-schema.js');
      io.stdout(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
      return EXIT.OK;
    },
    doctor: async (selection, options) => (await import('./doctor.js')).runDoctor({ selection, ...options }, io),
    provision: async (options) => (await import('./provision.js')).runProvisionCli(options, io),
    uninstall: async (selection, options) => (await import('./uninstall.js')).runUninstall({ selection, ...options }, io),
    status: async (selection, options) => {
      const [{ runStatus }, { sqliteNativeBinding }] = await Promise.all([import('./status.js'), import('../lib/native-addon.js')]);
      return runStatus({ selection, ...options, nativeBinding: (stateDir) => sqliteNativeBinding(stateDir, io.env) }, io);
    },
    hub: async (selection, action) => {
      if (action.kind === 'run') return (await import('../daemon/hub-daemon.js')).runHubDaemon(selection, io);
      const [{ runHubStatus }, { sqliteNativeBinding }] = await Promise.all([import('./hub.js'), import('../lib/native-addon.js')]);
      return runHubStatus(selection, { json: action.json, nativeBinding: (dir) => sqliteNativeBinding(dir, io.env) }, io);
    },
    k3s: async (selection, action) =>
      (await import('./k3s.js')).runK3sCli({ selection, action, interactive: process.stderr.isTTY === true }, io),
  };
}

/**
 * Command groups whose definitions alone pull in a feature the agent never uses: each is loaded, and registered,
 * only when the command line names it (or asks for help, which lists every command).
 */
const LAZY_COMMAND_GROUPS: Record<string, () => Promise<CommandRegistrar>> = {
  fleet: async () => (await import('./fleet.js')).registerFleetCommands,
  hub: async () => {
    const [{ registerHubAdminCommands }, { registerHubEnrolmentCommands }] = await Promise.all([import('./hub-admin.js'), import('./hub-enrolment-admin.js')]);
    return (program, io, setExitCode) => {
      registerHubAdminCommands(program, io, setExitCode);
      registerHubEnrolmentCommands(program, io, setExitCode);
    };
  },
};

async function lazyRegistrars(argv: string[]): Promise<CommandRegistrar[]> {
  const words = argv.slice(2);
  const named = words.find((word) => !word.startsWith('-'));
  const wantsHelp = named === undefined || named === 'help' || words.includes('--help') || words.includes('-h');
  const groups = Object.entries(LAZY_COMMAND_GROUPS).filter(([name]) => wantsHelp || name === named);
  return Promise.all(groups.map(([, load]) => load()));
}

/** Parses argv, runs the command it names and returns the exit code (sysexits: 64 usage, 78 configuration, 1 else). */
export async function runCommandLine(argv: string[], io: CliIo, runAgent: RunAgent): Promise<number> {
  let exitCode: number = EXIT.OK;
  try {
    const program = buildProgram(commandHandlers(io, runAgent), io, (code) => (exitCode = code), await lazyRegistrars(argv));
    return await runCli(program, argv, () => exitCode);
  } catch (err) {
    io.stderr(`fleetlet: ${errorMessage(err)}\n`);
    return exitCodeFor(err);
  }
}
