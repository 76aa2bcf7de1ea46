/** sysexits(3): what a caller (systemd, a script, a person) can tell from the exit code alone. */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64,
  CONFIG: 78,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
