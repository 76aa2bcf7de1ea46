import type { Logger } from '../lib/logger.js';
import type { Lifecycle } from './lifecycle.js';

export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
}

/**
 * Runs the lifecycle until SIGTERM or SIGINT, then stops it in reverse order. Resolves with the exit code:
 * 0 after a clean stop, 1 when a part failed or hung. A second signal while stopping exits at once with 1,
 * as a person pressing Ctrl-C twice expects.
 */
export async function runUntilSignal(
  lifecycle: Lifecycle,
  logger: Logger,
  signals: SignalSource,
  forceExit: (code: number) => void,
): Promise<number> {
  let requested: NodeJS.Signals | undefined;
  let wake: () => void = () => {};
  const stopRequested = new Promise<void>((resolve) => (wake = resolve));
  const onSignal = (signal: NodeJS.Signals) => () => {
    if (requested) {
      logger.warn({ signal }, 'second signal while stopping; exiting now');
      forceExit(1);
      return;
    }
    requested = signal;
    logger.info({ signal }, 'stopping');
    wake();
  };
  const handlers = { SIGTERM: onSignal('SIGTERM'), SIGINT: onSignal('SIGINT') } as const;
  for (const [signal, handler] of Object.entries(handlers)) signals.on(signal as NodeJS.Signals, handler);
  // Signal handlers alone do not keep Node running; a daemon with nothing scheduled must still wait for its signal.
  const keepAlive = setInterval(() => {}, 1 << 30);
  try {
    await Promise.race([lifecycle.start(), stopRequested]);
    if (!requested) logger.info('fleetlet agent running');
    await stopRequested;
    const report = await lifecycle.stop();
    const clean = report.failed.length === 0 && report.timedOut.length === 0;
    logger.info({ ...report, clean }, 'stopped');
    return clean ? 0 : 1;
  } finally {
    clearInterval(keepAlive);
    for (const [signal, handler] of Object.entries(handlers)) signals.off(signal as NodeJS.Signals, handler);
  }
}
