import { readFileSync, statSync } from 'node:fs';
import { errorReason, UsageError } from '../lib/errors.js';

/** Reads a file an operator named on the command line, bounded in size; what goes wrong is a UsageError naming it. */
export function readOperatorFile(file: string, maxBytes: number): string {
  try {
    if (statSync(file).size > maxBytes) throw new UsageError(`${file} is larger than ${maxBytes} bytes`);
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`cannot read ${file}: ${errorReason(err)}`);
  }
}
