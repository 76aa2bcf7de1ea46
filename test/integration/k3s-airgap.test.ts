import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installFromFolder } from '../../src/k3s/airgap.js';
import { AirgapBundleError, ChecksumMismatchError, InsufficientDiskError } from '../../src/k3s/errors.js';
import { K3sInstaller } from '../../src/k3s/installer.js';
import { checksumFile, sha256 } from '../helpers/release-server.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { tempDir } from '../helpers/paths.js';

const BINARY = fakeK3sBinary(256 * 1024, 'airgap');
const OLD_BINARY = fakeK3sBinary(1024, 'old');
const IMAGES = Buffer.from('fake image archive '.repeat(5000));

let dir: string;
let cleanup: () => void;
let bundle: string;
let binaryPath: string;
let dataDir: string;

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-airgap-'));
  bundle = join(dir, 'usb');
  binaryPath = join(dir, 'bin', 'k3s');
  dataDir = join(dir, 'data');
  mkdirSync(bundle);
  mkdirSync(join(dir, 'bin'));
  writeFileSync(binaryPath, OLD_BINARY, { mode: 0o755 });
});
afterEach(() => cleanup());

function checkDiskSpace(dirToCheck: string, bytes: number): Promise<void> {
  return new K3sInstaller({ binaryPath, arch: 'arm64', artifactUrl: 'http://127.0.0.1:9', channel: 'stable', channelUrl: 'http://127.0.0.1:9' }).checkDiskSpace(
    dirToCheck,
    bytes,
  );
}

function writeBundle(files: Record<string, Buffer>, sums = checksumFile(files)): void {
  for (const [name, content] of Object.entries(files)) writeFileSync(join(bundle, name), content);
  writeFileSync(join(bundle, 'sha256sum-arm64.txt'), sums);
}

describe('air-gap install from a folder', () => {
  it('installs the binary and puts the images where k3s imports them', async () => {
    writeBundle({ 'k3s-arm64': BINARY, 'k3s-airgap-images-arm64.tar.zst': IMAGES });
    const result = await installFromFolder(bundle, { binaryPath, dataDir, arch: 'arm64', checkDiskSpace });
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY));
    const imagesFile = join(dataDir, 'agent', 'images', 'k3s-airgap-images-arm64.tar.zst');
    expect(result.images).toEqual([imagesFile]);
    expect(sha256(readFileSync(imagesFile))).toBe(sha256(IMAGES));
    expect(result.previousPath).toBeDefined();
    expect(sha256(readFileSync(result.previousPath!))).toBe(sha256(OLD_BINARY));
  });

  it('accepts the binary renamed to plain k3s, checked against the released name', async () => {
    writeBundle({ 'k3s-arm64': BINARY });
    writeFileSync(join(bundle, 'k3s'), BINARY);
    rmSync(join(bundle, 'k3s-arm64'));
    await installFromFolder(bundle, { binaryPath, dataDir, arch: 'arm64', checkDiskSpace });
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY));
  });

  it('refuses a corrupt images archive and leaves binary and images alone', async () => {
    writeBundle(
      { 'k3s-arm64': BINARY, 'k3s-airgap-images-arm64.tar.zst': IMAGES },
      checksumFile({ 'k3s-arm64': BINARY, 'k3s-airgap-images-arm64.tar.zst': Buffer.from('other') }),
    );
    await expect(installFromFolder(bundle, { binaryPath, dataDir, arch: 'arm64', checkDiskSpace })).rejects.toThrow(
      ChecksumMismatchError,
    );
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(OLD_BINARY));
    expect(readdirSync(join(dataDir, 'agent', 'images'))).toEqual([]);
    expect(readdirSync(join(dir, 'bin'))).toEqual(['k3s']);
  });

  it('refuses a folder without the checksum file', async () => {
    writeFileSync(join(bundle, 'k3s-arm64'), BINARY);
    await expect(installFromFolder(bundle, { binaryPath, dataDir, arch: 'arm64', checkDiskSpace })).rejects.toThrow(
      AirgapBundleError,
    );
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(OLD_BINARY));
  });

  it('refuses when the disk is too small', async () => {
    writeBundle({ 'k3s-arm64': BINARY });
    const full = async (where: string, bytes: number) => {
      throw new InsufficientDiskError(where, bytes, 0);
    };
    await expect(installFromFolder(bundle, { binaryPath, dataDir, arch: 'arm64', checkDiskSpace: full })).rejects.toThrow(
      InsufficientDiskError,
    );
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(OLD_BINARY));
    expect(existsSync(join(dataDir, 'agent'))).toBe(false);
  });
});
