import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ChecksumMismatchError,
  DownloadError,
  InsufficientDiskError,
  ReleaseNotFoundError,
} from '../../src/k3s/errors.js';
import { K3sInstaller, previousBinaryPath, type InstallerOptions } from '../../src/k3s/installer.js';
import { checksumFile, sha256, startReleaseServer, type ReleaseServer } from '../helpers/release-server.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { tempDir } from '../helpers/paths.js';

const V1 = 'v1.35.2+k3s1';
const V2 = 'v1.36.3+k3s1';
const BINARY_V1 = fakeK3sBinary(2 * 1024 * 1024, 'one');
const BINARY_V2 = fakeK3sBinary(2 * 1024 * 1024, 'two');

let server: ReleaseServer;
let dir: string;
let cleanup: () => void;
let binaryPath: string;

beforeAll(async () => {
  server = await startReleaseServer();
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-install-'));
  binaryPath = join(dir, 'bin', 'k3s');
  server.publish(V1, { k3s: BINARY_V1, 'k3s-arm64': fakeK3sBinary(4096, 'arm64') });
  server.publish(V2, { k3s: BINARY_V2 });
  server.fault(V2, 'k3s', undefined);
  server.fault(V2, 'sha256sum-amd64.txt', undefined);
});
afterEach(() => cleanup());

function installer(overrides: Partial<InstallerOptions> = {}): K3sInstaller {
  return new K3sInstaller({
    binaryPath,
    arch: 'amd64',
    artifactUrl: server.artifactUrl,
    channelUrl: server.channelUrl,
    channel: 'stable',
    searchPath: join(dir, 'path'),
    ...overrides,
  });
}

/** Leftover partial downloads next to the binary (today's temp name and the one older versions used). */
function partials(): string[] {
  return readdirSync(join(dir, 'bin')).filter((name) => name.includes('.download-') || name.includes('.partial-'));
}

async function installV1(): Promise<void> {
  await installer({ version: V1 }).install();
  expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
}

describe('installing k3s from a release mirror', () => {
  it('installs a pinned version, executable, verified, with kubectl/crictl/ctr links where the commands are absent', async () => {
    mkdirSync(join(dir, 'path'));
    writeFileSync(join(dir, 'path', 'kubectl'), '#!/bin/sh\n', { mode: 0o755 });
    const progress: number[] = [];
    const result = await installer({ version: V1 }).install((received) => progress.push(received));

    expect(result).toMatchObject({ version: V1, changed: true, sha256: sha256(BINARY_V1) });
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
    expect(statSync(binaryPath).mode & 0o777).toBe(0o755);
    expect(execFileSync(binaryPath, ['--version'], { encoding: 'utf8' })).toContain('k3s version v1.36.3+k3s1');
    expect(progress.at(-1)).toBe(BINARY_V1.length);
    expect(progress.length).toBeGreaterThan(1);
    // kubectl exists on PATH: left alone, as install.sh does.
    expect(result.links.sort()).toEqual([join(dir, 'bin', 'crictl'), join(dir, 'bin', 'ctr')]);
    expect(readlinkSync(join(dir, 'bin', 'ctr'))).toBe(binaryPath);
    expect(existsSync(join(dir, 'bin', 'kubectl'))).toBe(false);
    expect(partials()).toEqual([]);
  });

  it('resolves the version through the channel server redirect', async () => {
    server.setChannel('stable', V2);
    const result = await installer().install();
    expect(result.version).toBe(V2);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V2));
    expect(server.requests).toContain('/channels/stable');
    expect(server.requests).toContain(`/download/${encodeURIComponent(V2)}/k3s`);
  });

  it('picks the artifact of the architecture (k3s-arm64 on arm64)', async () => {
    server.publish(V1, { 'k3s-arm64': fakeK3sBinary(4096, 'arm64') }, { arch: 'arm64' });
    await installer({ version: V1, arch: 'arm64' }).install();
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(fakeK3sBinary(4096, 'arm64')));
  });

  it('skips the download when the installed binary already has the release hash', async () => {
    await installV1();
    const before = server.requests.length;
    const result = await installer({ version: V1 }).install();
    expect(result.changed).toBe(false);
    expect(server.requests.slice(before)).toEqual([`/download/${encodeURIComponent(V1)}/sha256sum-amd64.txt`]);
  });

  it('keeps the previous binary on upgrade and rolls back to it', async () => {
    await installV1();
    const result = await installer({ version: V2 }).install();
    expect(result.previousPath).toBe(previousBinaryPath(binaryPath));
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V2));
    expect(sha256(readFileSync(previousBinaryPath(binaryPath)))).toBe(sha256(BINARY_V1));

    expect(await installer().rollback()).toBe(true);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
    expect(existsSync(previousBinaryPath(binaryPath))).toBe(false);
    expect(await installer().rollback()).toBe(false);
  });
});

describe('download faults leave the installed binary untouched', () => {
  beforeEach(installV1);

  it('refuses a release that is not there (404)', async () => {
    server.fault(V2, 'k3s', { kind: 'status', status: 404 });
    await expect(installer({ version: V2 }).install()).rejects.toThrow(ReleaseNotFoundError);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
  });

  it('refuses a missing checksum file (404)', async () => {
    server.fault(V2, 'sha256sum-amd64.txt', { kind: 'status', status: 404 });
    await expect(installer({ version: V2 }).install()).rejects.toThrow(/sha256sum-amd64.txt does not exist/);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
  });

  it('treats a server error as transient', async () => {
    server.fault(V2, 'k3s', { kind: 'status', status: 503 });
    const error = await installer({ version: V2 }).install().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(DownloadError);
    expect((error as DownloadError).severity).toBe('transient');
  });

  it('refuses a truncated download and removes the partial file', async () => {
    server.fault(V2, 'k3s', { kind: 'truncate', bytes: 300_000 });
    await expect(installer({ version: V2 }).install()).rejects.toThrow(DownloadError);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
    expect(partials()).toEqual([]);
  });

  it('refuses a download whose sha256 does not match, even without a Content-Length', async () => {
    server.publish(V2, { k3s: BINARY_V2 }, { checksums: checksumFile({ k3s: fakeK3sBinary(1024, 'other') }) });
    server.fault(V2, 'k3s', { kind: 'no-length' });
    const error = await installer({ version: V2 }).install().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ChecksumMismatchError);
    expect((error as ChecksumMismatchError).actual).toBe(sha256(BINARY_V2));
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
    expect(partials()).toEqual([]);
  });

  it('refuses a checksum file without an entry for the binary', async () => {
    server.publish(V2, { k3s: BINARY_V2 }, { checksums: checksumFile({ 'k3s-arm64': 'x', 'k3s-airgap-images-amd64.tar': 'y' }) });
    await expect(installer({ version: V2 }).install()).rejects.toThrow(/no entry for k3s/);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
  });

  it('checks free disk space before downloading', async () => {
    const asked: string[] = [];
    const small = installer({ version: V2, freeBytes: async (where) => (asked.push(where), 1024 * 1024) });
    const error = await small.install().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InsufficientDiskError);
    expect(asked).toEqual([join(dir, 'bin')]);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY_V1));
    expect(partials()).toEqual([]);
  });
});

describe('a real small file system', () => {
  let mounted: string | undefined;
  beforeEach(() => {
    mounted = join(dir, 'small');
    mkdirSync(mounted);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mounted], { stdio: 'ignore' });
    } catch {
      mounted = undefined; // not root or no mount permission: the injected probe above covers the logic
    }
  });
  afterEach(() => {
    if (mounted) execFileSync('umount', [mounted]);
  });

  it('refuses to download onto a 4 MiB tmpfs using the real statfs figures', async (context) => {
    if (!mounted) return context.skip();
    const onSmall = installer({ version: V2, binaryPath: join(mounted, 'k3s') });
    const error = await onSmall.install().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InsufficientDiskError);
    expect((error as InsufficientDiskError).freeBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(readdirSync(mounted)).toEqual([]);
  });
});

describe('file modes', () => {
  it('never leaves a group- or world-writable binary', async () => {
    await installV1();
    expect(lstatSync(binaryPath).mode & 0o022).toBe(0);
  });
});
