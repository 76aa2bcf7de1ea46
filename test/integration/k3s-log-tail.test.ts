import { appendFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LogTail } from '../../src/k3s/log-tail.js';
import { tempDir } from '../helpers/paths.js';

let dir: string;
let cleanup: () => void;
let file: string;
let lines: string[];
let tail: LogTail;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-log-tail-'));
  file = join(dir, 'agent-output.log');
  lines = [];
  tail = new LogTail(file, (line) => lines.push(line), { pollMs: 60_000, maxFileBytes: 10_000, maxLineLength: 100 });
});
afterEach(() => {
  tail.stop();
  cleanup();
});

describe('following the k3s log file', () => {
  it('starts at the end, joins lines split across writes, and waits for the newline', async () => {
    writeFileSync(file, 'old line from before\n');
    await tail.start(true);
    appendFileSync(file, 'first half ');
    await tail.poll();
    expect(lines).toEqual([]);
    appendFileSync(file, 'second half\nnext\n');
    await tail.poll();
    expect(lines).toEqual(['first half second half', 'next']);
  });

  it('returns from a poll only after reading what was written before it, even while another read is in progress', async () => {
    writeFileSync(file, '');
    await tail.start(true);
    appendFileSync(file, 'running\n');
    const inProgress = tail.poll();
    // k3s's last line, written just before it exits; the supervisor polls right after the exit.
    appendFileSync(file, 'dying words\n');
    await tail.poll();
    expect(lines).toEqual(['running', 'dying words']);
    await inProgress;
  });

  it('keeps the file bounded by truncating it in place, without losing the lines before the cut', async () => {
    await tail.start(false);
    const line = `${'x'.repeat(49)}\n`;
    appendFileSync(file, line.repeat(300)); // 15,000 bytes > 10,000
    await tail.poll();
    expect(lines).toHaveLength(300);
    expect(statSync(file).size).toBe(0);
    appendFileSync(file, 'after the cut\n');
    await tail.poll();
    expect(lines.at(-1)).toBe('after the cut');
  });

  it('cuts over-long lines and copes with a file truncated by someone else', async () => {
    await tail.start(false);
    appendFileSync(file, `${'y'.repeat(500)}\nshort\n`);
    await tail.poll();
    expect(lines).toEqual(['y'.repeat(100), 'short']);
    writeFileSync(file, 'rotated\n');
    await tail.poll();
    expect(lines.at(-1)).toBe('rotated');
  });

  it('follows a rotation: reads the rest of the renamed file, then the new one from its start', async () => {
    await tail.start(false);
    appendFileSync(file, 'old 1\n');
    await tail.poll();
    // k3s writes more, then rotates (renames the file, starts a new one) and writes on, all between two polls.
    appendFileSync(file, 'old 2\nold, unfinished');
    renameSync(file, join(dir, 'agent-output-2026-11-30T02-00-00.000.log'));
    appendFileSync(file, 'new 1, longer than everything read before\nnew 2\n');
    await tail.poll();
    expect(lines).toEqual(['old 1', 'old 2', 'old, unfinished', 'new 1, longer than everything read before', 'new 2']);
    appendFileSync(file, 'new 3\n');
    await tail.poll();
    expect(lines.at(-1)).toBe('new 3');
  });

  it('waits for a log file that does not exist yet', async () => {
    await tail.start(true);
    await tail.poll();
    writeFileSync(file, 'k3s started\n');
    await tail.poll();
    expect(lines).toEqual(['k3s started']);
  });
});
