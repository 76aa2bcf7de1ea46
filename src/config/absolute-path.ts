import { z } from 'zod';

/** A file or directory path in the config: absolute, since the daemon's working directory is not the operator's. */
export const absolutePath = z
  .string()
  .min(1, { error: 'expected a file path' })
  .max(4096)
  .refine((p) => p.startsWith('/'), { error: 'expected an absolute path' });
