/**
 * The newest lines written to it, bounded in count and bytes: the agent's own log kept in memory, so that a
 * `logs.collect` can send what the agent said lately without reading the journal. It is a log destination: what
 * reaches it was already serialized and redacted by the logger.
 */
export class RecentLines {
  private readonly lines: string[] = [];
  private bytes = 0;
  private partial = '';

  constructor(
    private readonly maxLines: number,
    private readonly maxBytes: number,
  ) {}

  write(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = (parts.pop() ?? '').slice(-this.maxBytes);
    for (const line of parts) if (line.length > 0) this.push(line);
  }

  /** The newest `max` lines, oldest first. */
  newest(max: number): string[] {
    return this.lines.slice(-max);
  }

  private push(line: string): void {
    this.lines.push(line);
    this.bytes += Buffer.byteLength(line);
    while (this.lines.length > this.maxLines || (this.bytes > this.maxBytes && this.lines.length > 1)) {
      this.bytes -= Buffer.byteLength(this.lines.shift()!);
    }
  }
}
