import type { Writable } from 'node:stream';
import { main } from './main.js';

/**
 * A writer that remembers its last write. Writes to a pipe are asynchronous: process.exit() right after them
 * drops what the reader has not taken yet (`fleet devices --json | jq` got 320 KiB of 490), so the exit waits.
 */
function trackedWriter(stream: Writable): { write: (text: string) => void; flushed: () => Promise<void> } {
  let last: Promise<void> = Promise.resolve();
  return {
    write: (text) => {
      last = new Promise((resolve) => stream.write(text, () => resolve()));
    },
    flushed: () => last,
  };
}

const stdout = trackedWriter(process.stdout);
const stderr = trackedWriter(process.stderr);

void main(process.argv, { stdout: stdout.write, stderr: stderr.write, env: process.env }).then(async (code) => {
  await Promise.all([stdout.flushed(), stderr.flushed()]);
  process.exit(code);
});
