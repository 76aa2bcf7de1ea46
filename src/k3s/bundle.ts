import { mkdir, open, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { installFromFolder, type AirgapOptions, type AirgapResult } from './airgap.js';
import { AirgapBundleError } from './errors.js';
import { releaseArtifacts } from './release.js';

const BLOCK = 512;
const CHUNK = 1024 * 1024;

/**
 * An air-gap bundle is a plain tar of what the air-gap folder holds (binary, sha256sum-<arch>.txt, images). Only
 * those names are taken from it, flattened to their base name, so a crafted archive cannot write elsewhere; each is
 * then verified against the checksum file exactly like a folder.
 */
export async function installFromBundle(tarPath: string, options: AirgapOptions): Promise<AirgapResult> {
  const artifacts = releaseArtifacts(options.arch);
  const wanted = new Set([artifacts.binaryName, 'k3s', artifacts.checksumName, ...artifacts.imageNames]);
  const staging = join(options.dataDir, 'agent', `.bundle-${randomBytes(4).toString('hex')}`);
  await options.checkDiskSpace(dirname(staging), (await stat(tarPath)).size);
  try {
    await extractWanted(tarPath, staging, wanted);
    return await installFromFolder(staging, options);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Reads a ustar/GNU tar sequentially and writes the regular files whose base name is wanted. */
export async function extractWanted(tarPath: string, dest: string, wanted: ReadonlySet<string>): Promise<string[]> {
  await mkdir(dest, { recursive: true, mode: 0o700 });
  const tar = await open(tarPath, 'r');
  const extracted: string[] = [];
  try {
    const { size: tarSize } = await tar.stat();
    let offset = 0;
    for (;;) {
      const header = Buffer.alloc(BLOCK);
      const { bytesRead } = await tar.read(header, 0, BLOCK, offset);
      if (bytesRead < BLOCK) throw new AirgapBundleError(`${tarPath} is truncated: no end-of-archive marker`);
      if (header.every((byte) => byte === 0)) return extracted;
      if (!validChecksum(header)) throw new AirgapBundleError(`${tarPath} is not a tar archive, or is corrupt at byte ${offset}`);
      const size = parseOctal(header.subarray(124, 136));
      const type = String.fromCharCode(header[156]!);
      const name = entryName(header);
      offset += BLOCK;
      if (offset + size > tarSize) throw new AirgapBundleError(`${tarPath} is truncated inside ${name}`);
      const base = basename(name);
      if ((type === '0' || type === '\0') && wanted.has(base) && !extracted.includes(base)) {
        await copyRange(tar, offset, size, join(dest, base));
        extracted.push(base);
      }
      offset += Math.ceil(size / BLOCK) * BLOCK;
    }
  } finally {
    await tar.close();
  }
}

async function copyRange(tar: Awaited<ReturnType<typeof open>>, start: number, size: number, target: string): Promise<void> {
  const out = await open(target, 'w', 0o600);
  try {
    const buffer = Buffer.alloc(Math.min(CHUNK, Math.max(size, 1)));
    for (let done = 0; done < size; ) {
      const { bytesRead } = await tar.read(buffer, 0, Math.min(buffer.length, size - done), start + done);
      if (bytesRead === 0) throw new AirgapBundleError(`bundle ended inside ${basename(target)}`);
      await out.write(buffer.subarray(0, bytesRead));
      done += bytesRead;
    }
  } finally {
    await out.close();
  }
}

function entryName(header: Buffer): string {
  const name = cString(header.subarray(0, 100));
  const isUstar = header.subarray(257, 262).toString('latin1') === 'ustar';
  const prefix = isUstar ? cString(header.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString('utf8');
}

function parseOctal(bytes: Buffer): number {
  const text = cString(bytes).trim();
  if (!/^[0-7]+$/.test(text)) throw new AirgapBundleError(`bad size field in tar header: ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

/** The header checksum: the sum of all header bytes with the checksum field itself counted as spaces. */
function validChecksum(header: Buffer): boolean {
  const stored = parseInt(cString(header.subarray(148, 156)).trim(), 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
  return stored === sum;
}
