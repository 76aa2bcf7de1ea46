import { existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { FleetletError } from '../lib/errors.js';
import { entryExists, sha256OfFile, writeFileAtomic } from '../lib/files.js';
import { MANIFEST_PATH } from './provision-plan.js';

/** Larger than any manifest of a real image (a few dozen entries); bounds what --verify reads. */
const MAX_MANIFEST_BYTES = 1024 * 1024;

const ManifestEntrySchema = z.union([
  z.object({ path: z.string(), mode: z.string().regex(/^0[0-7]{3}$/), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
  z.object({ path: z.string(), link: z.string() }).strict(),
]);

/** What provision wrote into an image, so that factory QA can check a card against it (`provision --verify`). */
export const ManifestSchema = z
  .object({
    schemaVersion: z.literal(1),
    /** The version the installed fleetlet binary reported, or null when it could not be run where the image was made. */
    fleetletVersion: z.string().nullable(),
    provisionedWith: z.string(),
    writtenAt: z.string(),
    files: z.array(ManifestEntrySchema),
  })
  .strict();
export type Manifest = z.infer<typeof ManifestSchema>;
export type ManifestEntry = z.infer<typeof ManifestEntrySchema>;

/** The manifest entries of what now is at `paths` in the image. */
export async function describeFiles(root: string, paths: { path: string; link?: boolean }[]): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = [];
  for (const { path, link } of paths) {
    const file = join(root, path);
    if (link) entries.push({ path, link: readlinkSync(file) });
    else entries.push({ path, mode: modeOf(file), sha256: await sha256OfFile(file) });
  }
  return entries;
}

/**
 * Writes the manifest. A run that wrote exactly what the last one did keeps its time, so that provisioning the same
 * image twice gives the same bytes, manifest included.
 */
export async function writeManifest(root: string, manifest: Omit<Manifest, 'schemaVersion'>): Promise<void> {
  const previous = readManifestIfValid(root);
  const same = previous && JSON.stringify(previous.files) === JSON.stringify(manifest.files) && previous.fleetletVersion === manifest.fleetletVersion;
  const content: Manifest = { schemaVersion: 1, ...manifest, writtenAt: same ? previous.writtenAt : manifest.writtenAt };
  await writeFileAtomic(join(root, MANIFEST_PATH), `${JSON.stringify(content, null, 2)}\n`, { mode: 0o644 });
}

export interface Verification {
  manifest: Manifest;
  problems: string[];
}

/** Checks every file of the manifest in the image: present, same mode, same sha256 (or the same link target). */
export async function verifyManifest(root: string): Promise<Verification> {
  const manifest = readManifest(root);
  const problems: string[] = [];
  for (const entry of manifest.files) {
    const file = join(root, entry.path);
    if (!entryExists(file)) {
      problems.push(`${entry.path}: missing`);
    } else if ('link' in entry) {
      const target = lstatSync(file).isSymbolicLink() ? readlinkSync(file) : '(not a link)';
      if (target !== entry.link) problems.push(`${entry.path}: links to ${target}, the manifest says ${entry.link}`);
    } else if (!lstatSync(file).isFile()) {
      problems.push(`${entry.path}: not a regular file`);
    } else {
      const mode = modeOf(file);
      if (mode !== entry.mode) problems.push(`${entry.path}: mode ${mode}, the manifest says ${entry.mode}`);
      if ((await sha256OfFile(file)) !== entry.sha256) problems.push(`${entry.path}: content differs from the manifest (sha256)`);
    }
  }
  return { manifest, problems };
}

export class ManifestUnreadableError extends FleetletError {
  readonly severity = 'fatal';
}

function readManifest(root: string): Manifest {
  const file = join(root, MANIFEST_PATH);
  if (!existsSync(file)) throw new ManifestUnreadableError(`${MANIFEST_PATH} is not in ${root}: this image was not provisioned (or the manifest was removed)`);
  if (lstatSync(file).size > MAX_MANIFEST_BYTES) throw new ManifestUnreadableError(`${MANIFEST_PATH} is larger than ${MAX_MANIFEST_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new ManifestUnreadableError(`${MANIFEST_PATH} is not JSON`);
  }
  const result = ManifestSchema.safeParse(parsed);
  if (!result.success) throw new ManifestUnreadableError(`${MANIFEST_PATH} is not a provision manifest: ${result.error.issues[0]?.message ?? 'invalid'}`);
  return result.data;
}

function readManifestIfValid(root: string): Manifest | undefined {
  try {
    return readManifest(root);
  } catch {
    return undefined;
  }
}

const modeOf = (file: string) => `0${(lstatSync(file).mode & 0o777).toString(8).padStart(3, '0')}`;

