import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { z } from 'zod';
import type { ConfigProblem } from '../lib/errors.js';
import { getPath, originOf, setPath, type Layer } from './layer.js';
import { MAY_BE_ABSENT_FILE_PATHS, SECRET_FILE_PATHS, SECRET_PATHS } from './schema.js';
import { leaves } from './schema-walk.js';
import { errorReason, isErrno } from '../lib/errors.js';

export const MAX_SECRET_FILE_BYTES = 64 * 1024;

/**
 * Reads `<secret>File` into `<secret>`, checks that every configured `*File` can be read, and warns about
 * secret files that group or others can read. Mutates the merged layer; returns problems and warnings.
 */
export function resolveFiles(merged: Layer, schema: z.ZodType, fileRoot = '/'): { problems: ConfigProblem[]; warnings: string[] } {
  const problems: ConfigProblem[] = [];
  const warnings: string[] = [];
  const where = (path: string) => originOf(merged.origins, path.split('.')) ?? 'not set';

  for (const secretPath of SECRET_PATHS) {
    const path = secretPath.split('.');
    const filePath = [...path.slice(0, -1), `${path[path.length - 1]}File`];
    const file = getPath(merged.values, filePath);
    if (file === undefined) continue;
    if (getPath(merged.values, path) !== undefined) {
      problems.push({
        path: secretPath,
        source: where(secretPath),
        message: `give either ${path.at(-1)} or ${filePath.at(-1)}, not both (${filePath.join('.')} is set at ${where(filePath.join('.'))})`,
      });
      continue;
    }
    if (typeof file !== 'string' || !file.startsWith('/')) continue; // the schema reports the bad path itself
    const read = readSecretFile(join(fileRoot, file));
    if (typeof read !== 'string') {
      problems.push({ path: filePath.join('.'), source: where(filePath.join('.')), message: read.problem });
      continue;
    }
    setPath(merged.values, path, read);
    merged.origins.set(secretPath, `file ${file}`);
  }

  for (const leaf of leaves(schema)) {
    const key = leaf.path.join('.');
    const file = getPath(merged.values, leaf.path);
    if (!key.endsWith('File') || typeof file !== 'string' || !file.startsWith('/')) continue;
    if (problems.some((p) => p.path === key)) continue;
    if ((MAY_BE_ABSENT_FILE_PATHS as readonly string[]).includes(key) && !existsSync(join(fileRoot, file))) continue;
    const unreadable = checkReadable(join(fileRoot, file));
    if (unreadable) {
      problems.push({ path: key, source: where(key), message: unreadable });
      continue;
    }
    if ((SECRET_FILE_PATHS as readonly string[]).includes(key)) {
      const mode = statSync(join(fileRoot, file)).mode & 0o777;
      if (mode & 0o077) {
        warnings.push(
          `${key}: secret file ${file} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); run: chmod 600 ${file}`,
        );
      }
    }
  }
  return { problems, warnings };
}

function readSecretFile(file: string): string | { problem: string } {
  const unreadable = checkReadable(file);
  if (unreadable) return { problem: unreadable };
  if (statSync(file).size > MAX_SECRET_FILE_BYTES) return { problem: `${file} is larger than ${MAX_SECRET_FILE_BYTES} bytes` };
  const value = readFileSync(file, 'utf8').trim();
  return value === '' ? { problem: `${file} is empty` } : value;
}

function checkReadable(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return `${file} is not a regular file`;
    accessSync(file, constants.R_OK);
    return undefined;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return `cannot read ${file}: no such file`;
    if (isErrno(err, 'EACCES')) return `cannot read ${file}: permission denied`;
    return `cannot read ${file}: ${errorReason(err)}`;
  }
}
