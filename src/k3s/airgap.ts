import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { copyToTemp, type DownloadedFile } from '../lib/download.js';
import { AirgapBundleError, k3sDownloadError } from './errors.js';
import { MAX_BINARY_BYTES, placeBinary, type InstallResult } from './installer.js';
import { expectedSha256, MAX_CHECKSUM_FILE_BYTES, parseChecksums, releaseArtifacts, type K3sArch } from './release.js';
import { fsyncDir } from '../lib/files.js';

/** Image archives are a few hundred MiB; bound them anyway so a wrong file cannot fill the disk. */
const MAX_IMAGES_BYTES = 4 * 1024 * 1024 * 1024;

export interface AirgapOptions {
  binaryPath: string;
  dataDir: string;
  arch: K3sArch;
  /** Checks there is room for `bytes` in `dir`; throws InsufficientDiskError. */
  checkDiskSpace: (dir: string, bytes: number) => Promise<void>;
}

export interface AirgapResult extends Omit<InstallResult, 'version' | 'links'> {
  images: string[];
}

/**
 * Installs from a folder holding what a release offers for download: the binary (named as released, or plain
 * `k3s`), `sha256sum-<arch>.txt` and optionally the images archive. Every file is verified against the checksum
 * file while it is copied; images go to `<data-dir>/agent/images/`, where k3s imports them at start.
 */
export async function installFromFolder(folder: string, options: AirgapOptions): Promise<AirgapResult> {
  const artifacts = releaseArtifacts(options.arch);
  const sumsPath = join(folder, artifacts.checksumName);
  const sums = parseChecksums(await readBoundedFile(sumsPath, MAX_CHECKSUM_FILE_BYTES));
  const binarySource = await firstExisting([join(folder, artifacts.binaryName), join(folder, 'k3s')]);
  if (!binarySource) throw new AirgapBundleError(`${folder} has no ${artifacts.binaryName} (or k3s) binary`);
  const expected = expectedSha256(sums, artifacts.binaryName, artifacts.checksumName);

  const imagesDir = join(options.dataDir, 'agent', 'images');
  const imageSources = (await Promise.all(artifacts.imageNames.map((name) => firstExisting([join(folder, name)])))).filter(
    (path): path is string => path !== undefined,
  );
  const imageSums = imageSources.map((path) => expectedSha256(sums, path.slice(folder.length + 1), artifacts.checksumName));

  const binarySize = (await stat(binarySource)).size;
  await mkdir(dirname(options.binaryPath), { recursive: true });
  await options.checkDiskSpace(dirname(options.binaryPath), binarySize);
  const binaryTemp = await copyVerified(binarySource, options.binaryPath, expected, MAX_BINARY_BYTES, binarySize);

  const images: string[] = [];
  try {
    if (imageSources.length > 0) await mkdir(imagesDir, { recursive: true });
    for (const [index, source] of imageSources.entries()) {
      const target = join(imagesDir, source.slice(folder.length + 1));
      const size = (await stat(source)).size;
      await options.checkDiskSpace(imagesDir, size);
      const temp = await copyVerified(source, target, imageSums[index]!, MAX_IMAGES_BYTES, size);
      await rename(temp.path, target);
      images.push(target);
    }
    if (images.length > 0) await fsyncDir(imagesDir);
  } catch (err) {
    await rm(binaryTemp.path, { force: true });
    throw err;
  }
  // The binary goes last: a failure with the images leaves the installed k3s as it was.
  const previousPath = await placeBinary(binaryTemp, options.binaryPath);
  return { binaryPath: options.binaryPath, sha256: expected, changed: true, previousPath, images };
}

async function copyVerified(source: string, target: string, sha256: string, maxBytes: number, totalBytes: number): Promise<DownloadedFile> {
  try {
    return await copyToTemp(source, target, { maxBytes, expectedSha256: sha256, totalBytes });
  } catch (err) {
    throw k3sDownloadError(err, source);
  }
}

async function readBoundedFile(path: string, maxBytes: number): Promise<string> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    throw new AirgapBundleError(`${path} is missing: an air-gap folder needs the release's checksum file`);
  }
  if (size > maxBytes) throw new AirgapBundleError(`${path} is larger than ${maxBytes} bytes; not a checksum file`);
  return readFile(path, 'utf8');
}

async function firstExisting(paths: string[]): Promise<string | undefined> {
  for (const path of paths) {
    try {
      if ((await stat(path)).isFile()) return path;
    } catch {
      // try the next name
    }
  }
  return undefined;
}
