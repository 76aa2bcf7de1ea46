import { open, stat, truncate, type FileHandle } from 'node:fs/promises';

/**
 * Follows the agent's log file by polling (inotify is not reliable on every file system of an SD card image), cuts
 * it into lines and keeps the file bounded while fleetlet runs: k3s appends with O_APPEND, so truncating it in place
 * is safe and the next write lands at the new end. k3s also rotates the file itself (log-rotation.ts): the file is
 * renamed and a new one started. The tail keeps the file it reads open, so that after a rotation it still reads what
 * was written to the old file before it switches to the new one, like `tail -F`.
 */
export class LogTail {
  #offset = 0;
  #partial = '';
  #timer: NodeJS.Timeout | undefined;
  /** The read in progress, if any. */
  #reading: Promise<void> | undefined;
  /** The file being read and its inode: the path names another inode once k3s rotated it. */
  #current: { handle: FileHandle; ino: number } | undefined;

  constructor(
    private readonly file: string,
    private readonly onLine: (line: string) => void,
    private readonly options: { pollMs: number; maxFileBytes: number; maxLineLength: number },
  ) {}

  /** Starts at the current end of the file (`fromEnd`) or at its beginning. */
  async start(fromEnd: boolean): Promise<void> {
    this.#offset = fromEnd ? ((await statOf(this.file))?.size ?? 0) : 0;
    this.#partial = '';
    this.#timer = setInterval(() => {
      // A log file removed or rotated under us is picked up again on the next poll.
      if (!this.#reading) this.poll().catch(() => undefined);
    }, this.options.pollMs);
    this.#timer.unref();
  }

  /** Stops polling and closes the file; one more poll() after it reads the last lines (and closes it again). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (!this.#reading) void this.close().catch(() => undefined);
  }

  /**
   * Reads whatever was appended before this call. A read already in progress may have sized the file before the
   * last lines were written (k3s's dying words, read right after its exit), so this one waits for it and reads again.
   */
  async poll(): Promise<void> {
    while (this.#reading) await this.#reading.catch(() => undefined);
    this.#reading = this.readAppended().finally(() => (this.#reading = undefined));
    return this.#reading;
  }

  private async readAppended(): Promise<void> {
    try {
      const now = await statOf(this.file);
      if (this.#current && this.#current.ino !== now?.ino) await this.finishRotatedFile();
      if (!now) return;
      this.#current ??= { handle: await open(this.file, 'r'), ino: now.ino };
      let size = now.size;
      if (size > this.options.maxFileBytes) {
        await this.readUpTo(size);
        await truncate(this.file, 0);
        this.#offset = 0;
        size = 0;
      }
      if (size < this.#offset) this.#offset = 0; // truncated by someone else
      await this.readUpTo(size);
    } finally {
      if (!this.#timer) await this.close();
    }
  }

  /** The path names a new file (k3s rotated it, or it was removed): read the rest of the old one, then start over. */
  private async finishRotatedFile(): Promise<void> {
    const { size } = await this.#current!.handle.stat();
    await this.readUpTo(size);
    if (this.#partial.length > 0) this.onLine(this.#partial);
    this.#partial = '';
    await this.close();
    this.#offset = 0;
  }

  private async close(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await current?.handle.close();
  }

  private async readUpTo(size: number): Promise<void> {
    if (size <= this.#offset || !this.#current) return;
    const chunk = Buffer.alloc(Math.min(size - this.#offset, 1024 * 1024));
    const { bytesRead } = await this.#current.handle.read(chunk, 0, chunk.length, this.#offset);
    this.#offset += bytesRead;
    const lines = (this.#partial + chunk.subarray(0, bytesRead).toString('utf8')).split('\n');
    this.#partial = lines.pop()!.slice(0, this.options.maxLineLength);
    for (const line of lines) if (line.length > 0) this.onLine(line.slice(0, this.options.maxLineLength));
  }
}

async function statOf(file: string): Promise<{ size: number; ino: number } | undefined> {
  try {
    const { size, ino } = await stat(file);
    return { size, ino };
  } catch {
    return undefined;
  }
}
