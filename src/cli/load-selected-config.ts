import { loadConfig, type LoadedConfig } from '../config/load.js';
import { ConfigError } from '../lib/errors.js';
import type { CliIo, ConfigSelection } from './program.js';

/**
 * Loads the config a command was pointed at. A bad config is printed (every problem) and gives undefined, so the
 * command returns EX_CONFIG (78); any other error propagates.
 */
export function loadSelectedConfig(selection: ConfigSelection, io: CliIo): LoadedConfig | undefined {
  try {
    return loadConfig({ path: selection.path, explicit: selection.explicit, env: io.env, sets: selection.sets });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`fleetlet: ${err.message}\n`);
    return undefined;
  }
}
