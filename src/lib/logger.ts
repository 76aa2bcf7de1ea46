import { pino, type Logger, type DestinationStream } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger };
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level: LogLevel;
  /** Human-readable lines instead of JSON; the default is "stdout is a terminal". */
  pretty?: boolean;
  destination?: DestinationStream;
  /** A second destination that gets every line as written (e.g. RecentLines for logs.collect). */
  copyTo?: { write(line: string): void };
}

/**
 * Structured JSON logs to stdout (journald keeps them as they are), readable lines on a terminal.
 * Secret values are Secret instances that serialize as "[redacted]"; the redact paths below are a second belt
 * for raw strings under well-known secret names.
 */
export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const destination =
    options.destination ??
    (pretty
      ? // In the main thread on purpose: a transport worker cannot be loaded from inside the single binary.
        pinoPretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
      : pino.destination({ fd: 1, sync: true }));
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: {
        paths: ['token', 'password', 'privateKey', '*.token', '*.password', '*.privateKey', 'env.K3S_TOKEN'],
        censor: '[redacted]',
      },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.copyTo ? pino.multistream([{ stream: destination }, { stream: options.copyTo }]) : destination,
  );
}
