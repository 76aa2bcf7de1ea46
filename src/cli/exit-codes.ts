import { ConfigError, isTransient, UsageError } from '../lib/errors.js';

/** sysexits(3): what a caller (systemd, a script, a person) can tell from the exit code alone. */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64,
  /** A transient failure (the network, a full disk): the same command may succeed when tried again later. */
  TEMPFAIL: 75,
  CONFIG: 78,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit code an error ends a command with; an error's severity tells a script whether trying again can help. */
export function exitCodeFor(err: unknown): ExitCode {
  if (err instanceof ConfigError) return EXIT.CONFIG;
  if (err instanceof UsageError) return EXIT.USAGE;
  return isTransient(err) ? EXIT.TEMPFAIL : EXIT.FAILURE;
}
