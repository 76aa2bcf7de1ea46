import { configJsonSchema } from '../config/json-schema.js';
import { ConfigError, errorMessage } from '../lib/errors.js';
import { agentStartProblems } from './config-agent-checks.js';
import { sqliteNativeBinding } from '../lib/native-addon.js';
import { runDoctor } from './doctor.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { runK3sCli } from './k3s.js';
import { runHubStatus } from './hub.js';
import { runHubDaemon } from '../daemon/hub-daemon.js';
import { loadSelectedConfig } from './load-selected-config.js';
import { buildProgram, runCli, type CliIo, type CommandHandlers, type ConfigSelection } from './program.js';
import { runProvisionCli } from './provision.js';
import { runStatus } from './status.js';
import { runUninstall } from './uninstall.js';

/** The one command the CLI does not run itself: the composition root builds and runs the agent. */
export type RunAgent = (selection: ConfigSelection) => Promise<number>;

/** What each command of `fleetlet` runs. */
function commandHandlers(io: CliIo, runAgent: RunAgent): CommandHandlers {
  return {
    agent: runAgent,
    configCheck: async (selection) => {
      const loaded = loadSelectedConfig(selection, io);
      if (!loaded) return EXIT.CONFIG;
      for (const warning of loaded.warnings) io.stderr(`warning: ${warning}\n`);
      const refused = agentStartProblems(loaded.config);
      if (refused.length > 0) {
        io.stderr(`fleetlet: ${new ConfigError(refused).message}\n`);
        return EXIT.CONFIG;
      }
      io.stdout(`configuration ok (${loaded.files.length > 0 ? loaded.files.join(', ') : 'no files; defaults and environment'})\n`);
      return EXIT.OK;
    },
    configSchema: async () => {
      io.stdout(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
      return EXIT.OK;
    },
    doctor: (selection, options) => runDoctor({ selection, ...options }, io),
    provision: (options) => runProvisionCli(options, io),
    uninstall: (selection, options) => runUninstall({ selection, ...options }, io),
    status: (selection, options) =>
      runStatus({ selection, ...options, nativeBinding: (stateDir) => sqliteNativeBinding(stateDir, io.env) }, io),
    hub: (selection, action) =>
      action.kind === 'run' ? runHubDaemon(selection, io) : runHubStatus(selection, { json: action.json, nativeBinding: (dir) => sqliteNativeBinding(dir, io.env) }, io),
    k3s: (selection, action) => runK3sCli({ selection, action, interactive: process.stderr.isTTY === true }, io),
  };
}

/** Parses argv, runs the command it names and returns the exit code (sysexits: 64 usage, 78 configuration, 1 else). */
export async function runCommandLine(argv: string[], io: CliIo, runAgent: RunAgent): Promise<number> {
  let exitCode: number = EXIT.OK;
  const program = buildProgram(commandHandlers(io, runAgent), io, (code) => (exitCode = code));
  try {
    return await runCli(program, argv, () => exitCode);
  } catch (err) {
    io.stderr(`fleetlet: ${errorMessage(err)}\n`);
    return exitCodeFor(err);
  }
}
