import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installFromBundle } from '../../src/k3s/bundle.js';
import { AirgapBundleError, ChecksumMismatchError } from '../../src/k3s/errors.js';
import { checksumFile, sha256 } from '../helpers/release-server.js';
import { fakeK3sBinary } from '../helpers/fake-k3s.js';
import { tempDir } from '../helpers/paths.js';

const BINARY = fakeK3sBinary(200_000, 'bundle');
const OLD = fakeK3sBinary(1000, 'old');
const IMAGES = Buffer.from('images '.repeat(10_000));

let dir: string;
let cleanup: () => void;
let binaryPath: string;
let dataDir: string;
const noDiskLimit = async () => {};

beforeEach(() => {
  ({ dir, cleanup } = tempDir('fleetlet-k3s-bundle-'));
  binaryPath = join(dir, 'bin', 'k3s');
  dataDir = join(dir, 'data');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(binaryPath, OLD, { mode: 0o755 });
});
afterEach(() => cleanup());

/** A real tar made by tar(1) from a folder of files. */
function makeTar(files: Record<string, Buffer | string>): string {
  const source = join(dir, 'src');
  mkdirSync(source, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(source, name), content);
  const tarFile = join(dir, 'bundle.tar');
  execFileSync('tar', ['-cf', tarFile, '-C', source, '.']);
  return tarFile;
}

const options = () => ({ binaryPath, dataDir, arch: 'arm64' as const, checkDiskSpace: noDiskLimit });

describe('air-gap bundle (tar)', () => {
  it('installs the binary and images from a tar made by tar(1), leaving no staging files', async () => {
    const files = { 'k3s-arm64': BINARY, 'k3s-airgap-images-arm64.tar.gz': IMAGES };
    const tarFile = makeTar({ ...files, 'sha256sum-arm64.txt': checksumFile(files), 'README.txt': 'ignored' });
    const result = await installFromBundle(tarFile, options());
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY));
    expect(result.images).toEqual([join(dataDir, 'agent', 'images', 'k3s-airgap-images-arm64.tar.gz')]);
    expect(readdirSync(join(dataDir, 'agent'))).toEqual(['images']);
  });

  it('never writes outside its staging folder, whatever the entry names say', async () => {
    const files = { 'k3s-arm64': BINARY };
    const sums = checksumFile(files);
    const tarFile = join(dir, 'evil.tar');
    writeFileSync(join(dir, 'bin.tmp'), BINARY);
    writeFileSync(join(dir, 'sums.tmp'), sums);
    // tar(1) refuses to create ../ names; python's tarfile writes them as given.
    execFileSync('python3', [
      '-c',
      `import tarfile, io, sys
with tarfile.open(sys.argv[1], 'w', format=tarfile.USTAR_FORMAT) as t:
    for name, data in [('../../escaped', b'x'), ('/etc/k3s-arm64', open(sys.argv[2], 'rb').read()), ('sha256sum-arm64.txt', open(sys.argv[3], 'rb').read())]:
        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))`,
      tarFile,
      join(dir, 'bin.tmp'),
      join(dir, 'sums.tmp'),
    ]);
    await installFromBundle(tarFile, options());
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(BINARY));
    expect(existsSync(join(dir, 'escaped'))).toBe(false);
    expect(existsSync(join(dataDir, 'escaped'))).toBe(false);
  });

  it('refuses a truncated bundle and keeps the installed binary', async () => {
    const files = { 'k3s-arm64': BINARY };
    const tarFile = makeTar({ ...files, 'sha256sum-arm64.txt': checksumFile(files) });
    truncateSync(tarFile, Math.floor(statSync(tarFile).size / 3));
    await expect(installFromBundle(tarFile, options())).rejects.toThrow(AirgapBundleError);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(OLD));
    expect(readdirSync(join(dataDir, 'agent'))).toEqual([]);
  });

  it('refuses a file that is not a tar', async () => {
    const notTar = join(dir, 'not.tar');
    writeFileSync(notTar, Buffer.alloc(4096, 7));
    await expect(installFromBundle(notTar, options())).rejects.toThrow(/not a tar archive/);
  });

  it('refuses a bundle whose binary does not match its checksum file', async () => {
    const tarFile = makeTar({ 'k3s-arm64': BINARY, 'sha256sum-arm64.txt': checksumFile({ 'k3s-arm64': OLD }) });
    await expect(installFromBundle(tarFile, options())).rejects.toThrow(ChecksumMismatchError);
    expect(sha256(readFileSync(binaryPath))).toBe(sha256(OLD));
  });
});
