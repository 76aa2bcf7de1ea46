import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/lib/logger.js';
import { Secret } from '../../src/lib/secret.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, logger: createLogger({ level: 'trace', destination }) };
}

describe('secrets in logs', () => {
  it('redacts Secret values wherever they are logged', () => {
    const { lines, logger } = capture();
    const token = new Secret('K10abc::server:hunter2');
    logger.info({ config: { k3s: { token } }, list: [token] }, `joining with ${token}`);
    expect(lines.join('')).not.toContain('hunter2');
    expect(lines.join('')).toContain('[redacted]');
    expect(inspect({ token })).not.toContain('hunter2');
    expect(JSON.stringify({ token })).not.toContain('hunter2');
    expect(token.reveal()).toBe('K10abc::server:hunter2');
  });

  it('redacts raw strings under well-known secret names too', () => {
    const { lines, logger } = capture();
    logger.warn({ token: 'raw-token-1', broker: { password: 'raw-password-2' }, env: { K3S_TOKEN: 'raw-3' } }, 'oops');
    const text = lines.join('');
    for (const secret of ['raw-token-1', 'raw-password-2', 'raw-3']) expect(text).not.toContain(secret);
  });

  it('writes one JSON object per line with level names', () => {
    const { lines, logger } = capture();
    logger.error({ part: 'link' }, 'broker unreachable');
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'error', part: 'link', msg: 'broker unreachable' });
  });
});
