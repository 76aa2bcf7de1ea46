/** The last `capacity` lines of the agent's log, each cut to `maxLineLength`: bounded whatever k3s prints. */
export class LogRing {
  readonly #lines: string[] = [];
  #next = 0;

  constructor(
    readonly capacity: number,
    readonly maxLineLength = 4096,
  ) {}

  push(line: string): void {
    const bounded = line.length > this.maxLineLength ? `${line.slice(0, this.maxLineLength)}…` : line;
    if (this.#lines.length < this.capacity) this.#lines.push(bounded);
    else this.#lines[this.#next] = bounded;
    this.#next = (this.#next + 1) % this.capacity;
  }

  /** Oldest first; at most `limit` of the most recent. */
  lines(limit = this.capacity): string[] {
    const ordered = this.#lines.length < this.capacity ? [...this.#lines] : [...this.#lines.slice(this.#next), ...this.#lines.slice(0, this.#next)];
    return ordered.slice(Math.max(0, ordered.length - limit));
  }
}
