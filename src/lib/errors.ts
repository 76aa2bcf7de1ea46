/**
 * Every error fleetlet raises on purpose is a FleetletError, and says whether it is fatal (retrying cannot help:
 * bad config, a database from a newer version) or transient (the next attempt may succeed: broker down, disk full).
 * Callers decide with `isFatal`/`isTransient` instead of matching messages.
 */
export type Severity = 'fatal' | 'transient';

export abstract class FleetletError extends Error {
  abstract readonly severity: Severity;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export function isFatal(err: unknown): boolean {
  return err instanceof FleetletError && err.severity === 'fatal';
}

export function isTransient(err: unknown): boolean {
  return err instanceof FleetletError && err.severity === 'transient';
}

/** The message of anything thrown; with `withCause`, the message of its cause too ("fetch failed (ECONNREFUSED ...)"). */
export function errorMessage(err: unknown, options: { withCause?: boolean } = {}): string {
  if (!(err instanceof Error)) return String(err);
  const cause: unknown = err.cause;
  return options.withCause && cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
}

/** A Node.js system error (ENOENT, EACCES...) or any other error with a string code (SQLite's), optionally that code. */
export function isErrno(err: unknown, code?: string): err is NodeJS.ErrnoException & { code: string } {
  if (!(err instanceof Error)) return false;
  const found: unknown = (err as { code?: unknown }).code;
  return typeof found === 'string' && (code === undefined || found === code);
}

/** What a file operation's failure says in one word when it has an errno code ("ENOENT"), else its message. */
export function errorReason(err: unknown): string {
  return isErrno(err) ? err.code : errorMessage(err);
}

/** One problem in a configuration, located by key path and by where its value came from. */
export interface ConfigProblem {
  path: string;
  source: string;
  message: string;
}

export class ConfigError extends FleetletError {
  readonly severity = 'fatal';
  constructor(readonly problems: ConfigProblem[]) {
    super(formatProblems(problems));
  }
}

function formatProblems(problems: ConfigProblem[]): string {
  const lines = problems.map((p) => `  ${p.path || '(root)'} (${p.source}): ${p.message}`);
  const noun = problems.length === 1 ? 'problem' : 'problems';
  return `invalid configuration, ${problems.length} ${noun}:\n${lines.join('\n')}`;
}

export class UsageError extends FleetletError {
  readonly severity = 'fatal';
}

export class DatabaseTooNewError extends FleetletError {
  readonly severity = 'fatal';
  constructor(
    readonly file: string,
    readonly found: number,
    readonly supported: number,
  ) {
    super(
      `state database ${file} has schema version ${found}, but this fleetlet knows versions up to ${supported}: ` +
        `it was written by a newer fleetlet. Refusing to open it (it is left untouched); run the newer fleetlet, ` +
        `or move the file away to start with an empty state.`,
    );
  }
}

export class StateDirError extends FleetletError {
  readonly severity = 'fatal';
}

/** Another agent runs on the same state directory; a second one would fight it for the MQTT session. */
export class StateDirLockedError extends FleetletError {
  readonly severity = 'fatal';
  constructor(
    readonly stateDir: string,
    readonly holderPid: number | undefined,
  ) {
    super(
      `another fleetlet agent${holderPid ? ` (pid ${holderPid})` : ''} is running on the state directory ${stateDir}; ` +
        'only one agent may use it: stop that one first (systemctl stop fleetlet), or give this one another stateDir',
    );
  }
}

export class DiskFullError extends FleetletError {
  readonly severity = 'transient';
}

export class ShutdownTimeoutError extends FleetletError {
  readonly severity = 'fatal';
}
