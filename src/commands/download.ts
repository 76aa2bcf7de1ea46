import { createHash, randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FleetletError } from '../lib/errors.js';

/** A download that failed or did not match its sha256; nothing was installed. */
export class ArtifactDownloadError extends FleetletError {
  readonly severity = 'transient';
}

export interface VerifiedDownload {
  path: string;
  sha256: string;
  bytes: number;
}

/**
 * Streams `url` into a temp file beside `target` (same file system, so the swap is a rename), hashing as it goes,
 * bounded by `maxBytes`, fsynced, and kept only when the sha256 matches: a cut-short or tampered artifact never
 * gets near the binary.
 */
export async function downloadVerified(
  url: string,
  target: string,
  expectedSha: string,
  options: { maxBytes: number; signal: AbortSignal; fetchImpl?: typeof fetch },
): Promise<VerifiedDownload> {
  const path = join(dirname(target), `.${basename(target)}.download-${randomBytes(4).toString('hex')}`);
  const hash = createHash('sha256');
  let bytes = 0;
  const file = await open(path, 'w', 0o700);
  try {
    let response: Response;
    try {
      response = await (options.fetchImpl ?? fetch)(url, { signal: options.signal, redirect: 'follow' });
    } catch (err) {
      throw new ArtifactDownloadError(`cannot download ${url}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!response.ok || !response.body) throw new ArtifactDownloadError(`downloading ${url} failed: HTTP ${response.status}`);
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.byteLength;
      if (bytes > options.maxBytes) throw new ArtifactDownloadError(`${url} is larger than ${options.maxBytes} bytes`);
      hash.update(chunk);
      await file.write(chunk);
    }
    await file.sync();
    const sha256 = hash.digest('hex');
    if (sha256 !== expectedSha) throw new ArtifactDownloadError(`${url}: sha256 ${sha256} does not match the expected ${expectedSha}`);
    return { path, sha256, bytes };
  } catch (err) {
    await file.close().catch(() => {});
    await rm(path, { force: true });
    throw err;
  } finally {
    await file.close().catch(() => {});
  }
}
