import type { CommandHandler } from './handler.js';

export interface LogSources {
  agent: (max: number) => Promise<string[]>;
  /** Absent when k3s is not supervised here. */
  k3s?: (max: number) => Promise<string[]>;
}

const DEFAULT_LINES = 200;
const MAX_LINE_CHARS = 2048;
/** Well under limits.maxMessageBytes, so a chunk always fits in one result message. */
export const CHUNK_BYTES = 32 * 1024;

/**
 * `logs.collect`: the newest agent and k3s log lines, each line and the count bounded, sent as progress results
 * of at most CHUNK_BYTES each (through the outbox, so they survive an outage), then a summary.
 */
export function logsCollectHandler(sources: LogSources): CommandHandler<'logs.collect'> {
  return {
    type: 'logs.collect',
    onInterrupted: 'resume',
    run: async (context) => {
      const max = context.command.args.lines ?? DEFAULT_LINES;
      const wanted = context.command.args.source ?? 'both';
      const picked: ['agent' | 'k3s', (max: number) => Promise<string[]>][] = [];
      if (wanted !== 'k3s') picked.push(['agent', sources.agent]);
      if (wanted !== 'agent' && sources.k3s) picked.push(['k3s', sources.k3s]);
      if (picked.length === 0) return { status: 'failed', reason: 'unavailable', detail: 'k3s is not supervised on this device' };
      let chunks = 0;
      let total = 0;
      for (const [source, read] of picked) {
        const lines = (await read(max)).slice(-max).map((line) => (line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}...` : line));
        total += lines.length;
        for (const chunk of chunked(lines)) {
          chunks += 1;
          context.progress('logs', `${source} chunk ${chunks}`, { source, chunk: chunks, lines: chunk });
        }
      }
      return { status: 'succeeded', detail: `${total} line(s) in ${chunks} chunk(s)`, data: { chunks, lines: total } };
    },
  };
}

function* chunked(lines: string[]): Generator<string[]> {
  let current: string[] = [];
  let bytes = 0;
  for (const line of lines) {
    const size = Buffer.byteLength(line) + 8;
    if (current.length > 0 && bytes + size > CHUNK_BYTES) {
      yield current;
      current = [];
      bytes = 0;
    }
    current.push(line);
    bytes += size;
  }
  if (current.length > 0) yield current;
}
