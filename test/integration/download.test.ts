import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  DownloadAbortedError,
  DownloadChecksumError,
  DownloadDeadlineError,
  DownloadStalledError,
  DownloadTooLargeError,
  copyToTemp,
  downloadToTemp,
  removeDownloadLeftovers,
} from '../../src/lib/download.js';
import { tempDir } from '../helpers/paths.js';
import { sha256, startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';

const VERSION = 'v1.36.3+k3s1';
const ARTIFACT = Buffer.alloc(256 * 1024, 'fleetlet');

let server: ReleaseServer;
let dir: string;
let cleanup: () => void;
let target: string;

beforeAll(async () => {
  server = await startReleaseServer();
  server.publish(VERSION, { k3s: ARTIFACT });
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-download-'));
  target = join(dir, 'bin', 'k3s');
  mkdirSync(join(dir, 'bin'));
  server.fault(VERSION, 'k3s', undefined);
});
afterEach(() => cleanup());

const url = () => `${server.artifactUrl}/${encodeURIComponent(VERSION)}/k3s`;
const bounds = { maxBytes: 1024 * 1024, idleTimeoutMs: 30_000, expectedSha256: sha256(ARTIFACT) };
/** Everything in the target's directory: a failed download must leave nothing behind. */
const leftovers = () => readdirSync(join(dir, 'bin'));

async function failure(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  return { error, ms: Date.now() - started };
}

describe('the bounded download', () => {
  it('writes a verified temp file beside the target, 0600, fsynced, and reports progress', async () => {
    const progress: number[] = [];
    const file = await downloadToTemp(url(), target, { ...bounds, onProgress: (received) => progress.push(received) });
    expect(file).toMatchObject({ sha256: sha256(ARTIFACT), bytes: ARTIFACT.length });
    expect(file.path.startsWith(join(dir, 'bin', '.k3s.download-'))).toBe(true);
    expect(readFileSync(file.path).equals(ARTIFACT)).toBe(true);
    expect(statSync(file.path).mode & 0o777).toBe(0o600);
    expect(progress.at(-1)).toBe(ARTIFACT.length);
  });

  it('gives up on a mirror that sends 1 KiB and stalls, within the idle timeout, and removes the temp file', async () => {
    server.fault(VERSION, 'k3s', { kind: 'stall', bytes: 1024 });
    const { error, ms } = await failure(downloadToTemp(url(), target, { ...bounds, idleTimeoutMs: 1_000 }));
    expect(error).toBeInstanceOf(DownloadStalledError);
    expect((error as DownloadStalledError).severity).toBe('transient');
    expect(ms).toBeGreaterThanOrEqual(1_000);
    expect(ms).toBeLessThan(6_000);
    expect(leftovers()).toEqual([]);
  });

  it('ends a download that never falls silent at its deadline', async () => {
    server.fault(VERSION, 'k3s', { kind: 'trickle', bytes: 512, everyMs: 100 });
    const { error, ms } = await failure(downloadToTemp(url(), target, { ...bounds, idleTimeoutMs: 1_000, deadline: Date.now() + 1_500 }));
    expect(error).toBeInstanceOf(DownloadDeadlineError);
    expect(ms).toBeLessThan(6_000);
    expect(leftovers()).toEqual([]);
  });

  it('does not even ask the mirror when the deadline has passed', async () => {
    const before = server.requests.length;
    const { error } = await failure(downloadToTemp(url(), target, { ...bounds, deadline: Date.now() - 1 }));
    expect(error).toBeInstanceOf(DownloadDeadlineError);
    expect(server.requests.length).toBe(before);
  });

  it('stops at once when its signal aborts (an agent stopping, a cancel)', async () => {
    server.fault(VERSION, 'k3s', { kind: 'stall', bytes: 1024 });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    const { error, ms } = await failure(downloadToTemp(url(), target, { ...bounds, signal: abort.signal }));
    expect(error).toBeInstanceOf(DownloadAbortedError);
    expect(ms).toBeLessThan(5_000);
    expect(leftovers()).toEqual([]);
  });

  it('refuses more bytes than allowed, announced or not', async () => {
    const announced = await failure(downloadToTemp(url(), target, { ...bounds, maxBytes: 64 * 1024 }));
    expect(announced.error).toBeInstanceOf(DownloadTooLargeError);
    server.fault(VERSION, 'k3s', { kind: 'no-length' });
    const streamed = await failure(downloadToTemp(url(), target, { ...bounds, maxBytes: 64 * 1024 }));
    expect(streamed.error).toBeInstanceOf(DownloadTooLargeError);
    expect(leftovers()).toEqual([]);
  });

  it('keeps nothing whose sha256 does not match', async () => {
    const { error } = await failure(downloadToTemp(url(), target, { ...bounds, expectedSha256: '0'.repeat(64) }));
    expect(error).toBeInstanceOf(DownloadChecksumError);
    expect((error as DownloadChecksumError).actual).toBe(sha256(ARTIFACT));
    expect(leftovers()).toEqual([]);
  });

  it('copies a local file with the same checks (air-gap installs)', async () => {
    const source = join(dir, 'k3s-source');
    writeFileSync(source, ARTIFACT);
    const file = await copyToTemp(source, target, { maxBytes: bounds.maxBytes, expectedSha256: sha256(ARTIFACT), totalBytes: ARTIFACT.length });
    expect(readFileSync(file.path).equals(ARTIFACT)).toBe(true);
    const { error } = await failure(copyToTemp(source, target, { maxBytes: bounds.maxBytes, expectedSha256: 'f'.repeat(64) }));
    expect(error).toBeInstanceOf(DownloadChecksumError);
    expect(leftovers()).toEqual([file.path.slice(join(dir, 'bin').length + 1)]);
  });
});

describe('leftovers of downloads a crash cut short', () => {
  it('are removed for their target only: other files and other targets are left alone', () => {
    const names = ['k3s', 'k3s.previous', '.k3s.partial-0a1b2c3d', '.k3s.download-1a2b3c4d', 'fleetlet', '.fleetlet.download-5e6f7a8b', '.k3s.tmp-1234'];
    for (const name of names) writeFileSync(join(dir, 'bin', name), 'x');
    expect(removeDownloadLeftovers(target).sort()).toEqual(['.k3s.download-1a2b3c4d', '.k3s.partial-0a1b2c3d']);
    expect(removeDownloadLeftovers(join(dir, 'bin', 'fleetlet'))).toEqual(['.fleetlet.download-5e6f7a8b']);
    expect(leftovers().sort()).toEqual(['.k3s.tmp-1234', 'fleetlet', 'k3s', 'k3s.previous']);
  });
});
