import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level: LogLevel;
  /** Where the lines go; JSON to stdout unless given. */
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
  const destination = options.destination ?? pino.destination({ fd: 1, sync: true });
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
    // Each stream of a multistream has its own level, 'info' unless told: the logger's level alone must decide.
    options.copyTo
      ? pino.multistream([
          { stream: destination, level: 'trace' },
          { stream: options.copyTo, level: 'trace' },
        ])
      : destination,
  );
}

/**
 * The agent's logger: JSON for journald, readable lines on a terminal. pino-pretty (and what it pulls in) is loaded
 * only for a terminal, so that the daemon under systemd never holds it in memory.
 */
export async function createProcessLogger(level: LogLevel, copyTo?: LoggerOptions['copyTo']): Promise<Logger> {
  if (process.stdout.isTTY !== true) return createLogger({ level, ...(copyTo ? { copyTo } : {}) });
  const { default: pinoPretty } = await import('pino-pretty');
  // In the main thread on purpose: a transport worker cannot be loaded from inside the single binary.
  const destination = pinoPretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  return createLogger({ level, destination, ...(copyTo ? { copyTo } : {}) });
}
