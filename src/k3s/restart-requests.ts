/**
 * restart() requests, numbered. A launch serves the requests made before it began; a request made while a launch
 * runs (an upgrade may have swapped the binary after that launch read it) asks for another launch, so it is never
 * lost in a launch that was already under way.
 */
export class RestartRequests {
  #asked = 0;
  #served = 0;
  #waiters: { generation: number; resolve: () => void }[] = [];

  /** A new request; resolves once a launch that began after it has run, whatever its outcome. */
  ask(): Promise<void> {
    const generation = ++this.#asked;
    return new Promise<void>((resolve) => this.#waiters.push({ generation, resolve }));
  }

  get pending(): boolean {
    return this.#asked > this.#served;
  }

  /** Called as a launch begins: the newest request it can serve. */
  launchBegins(): number {
    return this.#asked;
  }

  launchEnded(generation: number): void {
    this.#served = Math.max(this.#served, generation);
    const waiting = this.#waiters;
    this.#waiters = waiting.filter((waiter) => waiter.generation > this.#served);
    for (const waiter of waiting) if (waiter.generation <= this.#served) waiter.resolve();
  }

  /** At stop: nobody waits for a launch that will not come. */
  settleAll(): void {
    for (const waiter of this.#waiters.splice(0)) waiter.resolve();
  }
}
