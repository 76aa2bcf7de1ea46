import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.js';
import { DownloadChecksumError, DownloadFailedError } from '../../src/lib/download.js';
import { ConfigError, DiskFullError, errorMessage, errorReason, isErrno, StateDirError, UsageError } from '../../src/lib/errors.js';
import { tempDir } from '../helpers/paths.js';

function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (err) {
    return err;
  }
  throw new Error('nothing was thrown');
}

describe('errorMessage', () => {
  it('gives the message of an Error and the text of anything else thrown', () => {
    expect(errorMessage(new Error('broker gone'))).toBe('broker gone');
    expect(errorMessage('plain string')).toBe('plain string');
    expect(errorMessage(42)).toBe('42');
  });

  it('adds the cause only when asked', () => {
    const err = new Error('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:1') });
    expect(errorMessage(err)).toBe('fetch failed');
    expect(errorMessage(err, { withCause: true })).toBe('fetch failed (connect ECONNREFUSED 127.0.0.1:1)');
    expect(errorMessage(new Error('alone'), { withCause: true })).toBe('alone');
  });
});

describe('isErrno', () => {
  it('recognises a real file system error, and its code when one is named', () => {
    const { dir, cleanup } = tempDir();
    const err = thrownBy(() => readFileSync(join(dir, 'no-such-file')));
    cleanup();
    expect(isErrno(err)).toBe(true);
    expect(isErrno(err, 'ENOENT')).toBe(true);
    expect(isErrno(err, 'EACCES')).toBe(false);
    expect(errorReason(err)).toBe('ENOENT');
  });

  it('recognises the code of a real SQLite error', () => {
    const { dir, cleanup } = tempDir();
    const db = new BetterSqlite3(join(dir, 'state.db'));
    try {
      const err = thrownBy(() => db.prepare('SELECT * FROM no_such_table').all());
      expect(isErrno(err, 'SQLITE_ERROR')).toBe(true);
    } finally {
      db.close();
      cleanup();
    }
  });

  it('is false for errors without a code and for thrown non-errors that carry one', () => {
    expect(isErrno(new Error('no code'))).toBe(false);
    expect(isErrno({ code: 'ENOENT' })).toBe(false);
    expect(isErrno(undefined)).toBe(false);
    expect(errorReason(new Error('no code'))).toBe('no code');
  });
});

describe('exit code of an error', () => {
  it('is 75 (try again later) for a transient error, 1 for a fatal one', () => {
    expect(exitCodeFor(new DownloadFailedError('mirror down'))).toBe(EXIT.TEMPFAIL);
    expect(exitCodeFor(new DiskFullError('disk full'))).toBe(EXIT.TEMPFAIL);
    expect(exitCodeFor(new DownloadChecksumError('k3s', 'a', 'b'))).toBe(EXIT.FAILURE);
    expect(exitCodeFor(new StateDirError('not a directory'))).toBe(EXIT.FAILURE);
  });

  it('is 78 for a bad configuration, 64 for a usage error and 1 for anything not raised on purpose', () => {
    expect(exitCodeFor(new ConfigError([{ path: 'broker.url', source: 'file', message: 'required' }]))).toBe(EXIT.CONFIG);
    expect(exitCodeFor(new UsageError('give a target'))).toBe(EXIT.USAGE);
    expect(exitCodeFor(new TypeError('a bug'))).toBe(EXIT.FAILURE);
  });
});
