import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, type ReadStream } from 'node:fs';
import { chmod, rm } from 'node:fs/promises';
import { fsyncFile } from '../lib/files.js';
import { basename, dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ChecksumMismatchError, DownloadError } from './errors.js';

export type Progress = (receivedBytes: number, totalBytes: number | undefined) => void;

export interface VerifiedTemp {
  path: string;
  bytes: number;
  sha256: string;
}

/**
 * Streams `source` into a temporary file beside `target`, hashing as it goes, and keeps it only when the sha256
 * matches: a truncated or tampered download never reaches the target name. The temp file is fsynced so that the
 * rename that follows cannot expose an empty file after a power cut.
 */
export async function writeVerifiedTemp(
  source: Readable | ReadStream,
  target: string,
  expectedSha: string,
  options: { maxBytes: number; totalBytes?: number; onProgress?: Progress; what: string },
): Promise<VerifiedTemp> {
  const path = join(dirname(target), `.${basename(target)}.partial-${randomBytes(4).toString('hex')}`);
  const hash = createHash('sha256');
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > options.maxBytes) {
        callback(new DownloadError(`${options.what} is larger than ${options.maxBytes} bytes; refusing it`));
        return;
      }
      hash.update(chunk);
      options.onProgress?.(bytes, options.totalBytes);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(source, meter, createWriteStream(path, { mode: 0o600 }));
    const sha256 = hash.digest('hex');
    if (options.totalBytes !== undefined && bytes !== options.totalBytes) {
      throw new DownloadError(`${options.what} was cut short: got ${bytes} of ${options.totalBytes} bytes; nothing was installed`);
    }
    if (sha256 !== expectedSha) throw new ChecksumMismatchError(options.what, expectedSha, sha256);
    await fsyncFile(path);
    return { path, bytes, sha256 };
  } catch (err) {
    await rm(path, { force: true });
    if (err instanceof DownloadError || err instanceof ChecksumMismatchError) throw err;
    throw new DownloadError(`${options.what}: ${err instanceof Error ? err.message : String(err)}; nothing was installed`, {
      cause: err,
    });
  }
}

export async function makeExecutable(path: string): Promise<void> {
  await chmod(path, 0o755);
}
