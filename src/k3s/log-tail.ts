import { open, stat, truncate } from 'node:fs/promises';

/**
 * Follows the agent's log file by polling (inotify is not reliable on every file system of an SD card image), cuts
 * it into lines and keeps the file bounded: k3s appends with O_APPEND, so truncating it in place is safe and the
 * next write lands at the new end.
 */
export class LogTail {
  #offset = 0;
  #partial = '';
  #timer: NodeJS.Timeout | undefined;
  #reading = false;

  constructor(
    private readonly file: string,
    private readonly onLine: (line: string) => void,
    private readonly options: { pollMs: number; maxFileBytes: number; maxLineLength: number },
  ) {}

  /** Starts at the current end of the file (`fromEnd`) or at its beginning. */
  async start(fromEnd: boolean): Promise<void> {
    this.#offset = fromEnd ? await sizeOf(this.file) : 0;
    this.#partial = '';
    this.#timer = setInterval(() => {
      // A log file removed or rotated under us is picked up again on the next poll.
      this.poll().catch(() => undefined);
    }, this.options.pollMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Reads whatever was appended since the last call. */
  async poll(): Promise<void> {
    if (this.#reading) return;
    this.#reading = true;
    try {
      let size = await sizeOf(this.file);
      if (size > this.options.maxFileBytes) {
        await this.readUpTo(size);
        await truncate(this.file, 0);
        this.#offset = 0;
        size = 0;
      }
      if (size < this.#offset) this.#offset = 0; // truncated by someone else
      await this.readUpTo(size);
    } finally {
      this.#reading = false;
    }
  }

  private async readUpTo(size: number): Promise<void> {
    if (size <= this.#offset) return;
    const handle = await open(this.file, 'r');
    try {
      const chunk = Buffer.alloc(Math.min(size - this.#offset, 1024 * 1024));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, this.#offset);
      this.#offset += bytesRead;
      const lines = (this.#partial + chunk.subarray(0, bytesRead).toString('utf8')).split('\n');
      this.#partial = lines.pop()!.slice(0, this.options.maxLineLength);
      for (const line of lines) if (line.length > 0) this.onLine(line.slice(0, this.options.maxLineLength));
    } finally {
      await handle.close();
    }
  }
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}
