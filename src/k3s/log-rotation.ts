/**
 * k3s's log must stay bounded also while fleetlet is stopped or crash-looping: a stop or restart of fleetlet leaves
 * k3s running, and a k3s that retries a rejected password or an unreachable server writes lines every few seconds for
 * as long as nobody looks. fleetlet trims the file while it runs (LogTail), but that holds only while it runs, and a
 * pipe to fleetlet is no answer (a pipe to a dead fleetlet would kill k3s with SIGPIPE).
 *
 * So k3s rotates its own log: `--log FILE` makes it write through lumberjack (50 MB, then FILE-<time>.log.gz, three
 * backups kept), which bounds the file with no help from fleetlet. The price, per k3s-facts.md §3: the pid fleetlet
 * starts becomes a "k3s init" parent that runs the agent as its child (Pdeathsig SIGTERM) and exits with its code.
 * That parent is the pid fleetlet records, signals (one SIGTERM: it interrupts its child and waits for it) and adopts,
 * and the one the system-upgrade-controller targets; its own few lines (flag errors before the fork) go to the same
 * file through fleetlet's O_APPEND descriptor.
 */
export const K3S_LOG_ROTATION = { maxFileBytes: 50 * 1024 * 1024, compressedBackups: 3 } as const;

/** The agent's arguments with k3s's own rotating log to `logFile`. */
export function withRotatingLog(args: readonly string[], logFile: string): string[] {
  return [...args, '--log', logFile];
}
