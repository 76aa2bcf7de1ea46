import type { AgentProcess } from './agent-process.js';
import type { Clock } from './supervisor-options.js';

/**
 * The supervisor's one way to wait: a delay cut short when the child exits, when the machine stops, or by wake()
 * (a restart or stop of k3s was asked). A wake while nothing waits is kept for the next wait, so a request made
 * between two waits never sits out a long backoff.
 */
export class MachineWait {
  readonly #stop = new AbortController();
  #wake: (() => void) | undefined;
  #wokenEarly = false;

  constructor(private readonly clock: Clock) {}

  get stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  stop(): void {
    this.#stop.abort();
  }

  wake(): void {
    if (this.#wake) this.#wake();
    else this.#wokenEarly = true;
  }

  async for(ms: number, child: AgentProcess | undefined): Promise<'tick' | 'exit' | 'stop'> {
    if (this.stopping) return 'stop';
    if (this.#wokenEarly) {
      this.#wokenEarly = false;
      return 'tick';
    }
    const timer = new AbortController();
    const stopped = this.#stop.signal;
    const onStop = () => timer.abort();
    stopped.addEventListener('abort', onStop);
    const woken = new Promise<'tick'>((resolve) => (this.#wake = () => resolve('tick')));
    try {
      return await Promise.race([
        child ? child.exited.then(() => 'exit' as const) : new Promise<never>(() => {}),
        this.clock.sleep(ms, timer.signal).then(
          () => 'tick' as const,
          () => 'stop' as const,
        ),
        woken,
      ]);
    } finally {
      timer.abort();
      stopped.removeEventListener('abort', onStop);
      this.#wake = undefined;
    }
  }
}
