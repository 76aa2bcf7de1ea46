import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, readlink, rm, stat, symlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { isErrno } from '../lib/errors.js';
import { fsyncDir, renameDurable, writeFileAtomic } from '../lib/files.js';

/**
 * The enrolled credentials on disk, in `enrolment.dir` (0700):
 * - `gen-<id>/device.key` (0600, by the key store) and `gen-<id>/device.pem`: one certificate generation each;
 * - `current`: a symbolic link to the generation in use, switched by one rename, so that key and certificate
 *   change together or not at all, also across a power cut (broker.tls.certFile/keyFile point through it);
 * - `renewal-credential` (0600): the newest credential the hub issued, for the next renewal.
 * A renewed generation lives beside the current one until the link connected with it.
 */
export const CURRENT_LINK = 'current';
export const CERT_FILE = 'device.pem';
const CREDENTIAL_FILE = 'renewal-credential';
const GENERATION = /^gen-[0-9a-f]{16}$/;
const MAX_FILE_BYTES = 64 * 1024;

export class EnrolledFiles {
  constructor(readonly dir: string) {}

  /** The generation `current` points at, or undefined before the first certificate. */
  async currentSlot(): Promise<string | undefined> {
    try {
      return join(this.dir, basename(await readlink(join(this.dir, CURRENT_LINK))));
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'EINVAL')) return undefined;
      throw err;
    }
  }

  /** A new, empty generation directory. */
  async newSlot(): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const slot = join(this.dir, `gen-${randomBytes(8).toString('hex')}`);
    await mkdir(slot, { mode: 0o700 });
    return slot;
  }

  async writeCertificate(slot: string, pem: string): Promise<void> {
    await writeFileAtomic(join(slot, CERT_FILE), pem, { mode: 0o644 });
  }

  async readCertificate(slot: string): Promise<string | undefined> {
    return readBounded(join(slot, CERT_FILE));
  }

  /** Points `current` at `slot` in one rename: key and certificate switch together. */
  async promote(slot: string): Promise<void> {
    const temp = join(this.dir, `.${CURRENT_LINK}-${randomBytes(4).toString('hex')}`);
    await symlink(basename(slot), temp);
    await renameDurable(temp, join(this.dir, CURRENT_LINK));
  }

  async removeSlot(slot: string): Promise<void> {
    await rm(slot, { recursive: true, force: true });
    await fsyncDir(this.dir);
  }

  /** Removes every generation but the current one: what a crash or an unproven renewal left behind. */
  async removeOtherSlots(): Promise<string[]> {
    const current = await this.currentSlot();
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return [];
      throw err;
    }
    const stray = names.filter((name) => GENERATION.test(name) && join(this.dir, name) !== current);
    for (const name of stray) await rm(join(this.dir, name), { recursive: true, force: true });
    if (stray.length > 0) await fsyncDir(this.dir);
    return stray;
  }

  async readCredential(): Promise<string | undefined> {
    return (await readBounded(join(this.dir, CREDENTIAL_FILE)))?.trim() || undefined;
  }

  async writeCredential(credential: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.dir, CREDENTIAL_FILE), `${credential}\n`, { mode: 0o600 });
  }
}

async function readBounded(file: string): Promise<string | undefined> {
  try {
    if ((await stat(file)).size > MAX_FILE_BYTES) return undefined;
    return await readFile(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}
