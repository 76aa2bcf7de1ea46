import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/lib/logger.js';
import { RecentLines } from '../../src/lib/recent-lines.js';

describe("the agent's recent log lines", () => {
  it('keeps the newest lines within the count and byte bounds, joining lines written in pieces', () => {
    const recent = new RecentLines(3, 1_000);
    recent.write('one\ntw');
    recent.write('o\nthree\nfour\n');
    expect(recent.newest(10)).toEqual(['two', 'three', 'four']);
    const small = new RecentLines(100, 10);
    small.write('aaaa\nbbbb\ncccc\n');
    expect(small.newest(10)).toEqual(['bbbb', 'cccc']);
  });

  it('gets what the logger writes, with secrets already redacted', () => {
    const recent = new RecentLines(10, 10_000);
    const destination = new Writable({ write: (_chunk, _encoding, done) => done() });
    const logger = createLogger({ level: 'info', destination, copyTo: recent });
    logger.info({ password: 'hunter2' }, 'connected to the broker');
    const [line] = recent.newest(1);
    expect(line).toContain('connected to the broker');
    expect(line).toContain('[redacted]');
    expect(line).not.toContain('hunter2');
  });

  it('passes debug lines to both the log and the copy when the logger is at debug', () => {
    const recent = new RecentLines(10, 10_000);
    const written: string[] = [];
    const destination = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        written.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger({ level: 'debug', destination, copyTo: recent });
    logger.debug('sampler tick');
    expect(written.join('')).toContain('"level":"debug"');
    expect(recent.newest(1)[0]).toContain('sampler tick');
  });
});
