import type { Logger } from '../lib/logger.js';

/** A long-running piece of the daemon. start() returns once the part is running; stop() once it has let go. */
export interface Part {
  readonly name: string;
  start(): Promise<void> | void;
  stop(): Promise<void> | void;
}

export interface StopReport {
  stopped: string[];
  failed: { name: string; error: string }[];
  timedOut: string[];
}

/**
 * Starts parts in order and stops them in reverse, so that each part can rely on the ones before it for its whole
 * life (the outbox outlives the link that drains it). Stopping is bounded: a part that hangs is reported and
 * abandoned so that the process can still exit.
 */
export class Lifecycle {
  private readonly started: Part[] = [];
  private stopping: Promise<StopReport> | undefined;

  constructor(
    private readonly parts: readonly Part[],
    private readonly logger: Logger,
    private readonly stopTimeoutMs: number,
  ) {}

  async start(): Promise<void> {
    for (const part of this.parts) {
      if (this.stopping) return;
      this.logger.debug({ part: part.name }, 'starting');
      try {
        await part.start();
      } catch (err) {
        this.logger.error({ part: part.name, err }, 'part failed to start; stopping the ones already started');
        await this.stop();
        throw err;
      }
      this.started.push(part);
    }
  }

  /** Idempotent: a second call waits for the first. */
  stop(): Promise<StopReport> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<StopReport> {
    const report: StopReport = { stopped: [], failed: [], timedOut: [] };
    const deadline = Date.now() + this.stopTimeoutMs;
    for (const part of [...this.started].reverse()) {
      const remaining = Math.max(0, deadline - Date.now());
      const outcome = await withTimeout(Promise.resolve().then(() => part.stop()), remaining);
      if (outcome === 'timeout') {
        report.timedOut.push(part.name);
        this.logger.error({ part: part.name, timeoutMs: this.stopTimeoutMs }, 'part did not stop in time');
      } else if (outcome instanceof Error) {
        report.failed.push({ name: part.name, error: outcome.message });
        this.logger.error({ part: part.name, err: outcome }, 'part failed to stop');
      } else {
        report.stopped.push(part.name);
      }
    }
    return report;
  }
}

async function withTimeout(work: Promise<void>, ms: number): Promise<'ok' | 'timeout' | Error> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([
      work.then(
        () => 'ok' as const,
        (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
